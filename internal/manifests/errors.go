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

	// ErrNoRegistries is returned by ServerFiles when the registry
	// allow-list is on (the default) and neither the config nor
	// Options.Registries names a host.
	ErrNoRegistries = errors.New("the registry allow-list names no host")

	// ErrInvalidOption is returned for any other unusable option value.
	ErrInvalidOption = errors.New("invalid option")
)
