package cli

import "github.com/spf13/cobra"

func newManifestsCommand(s Streams) *cobra.Command {
	return &cobra.Command{Use: "manifests", Hidden: true}
}
