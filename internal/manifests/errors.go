package manifests

import "errors"

// Sentinel errors returned by Options.Validate, wrapped with context.
var (
	// ErrNoStages is returned when Options names no stage: a webhook
	// configuration without entries would admit everything silently.
	ErrNoStages = errors.New("no stages")

	// ErrUnknownStage is returned when ClusterStage or a PinTags entry is
	// not one of Stages.
	ErrUnknownStage = errors.New("unknown stage")

	// ErrInvalidOption is returned for any other unusable option value.
	ErrInvalidOption = errors.New("invalid option")
)
