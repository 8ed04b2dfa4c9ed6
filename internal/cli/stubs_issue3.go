package cli

import "github.com/spf13/cobra"

func newCheckCommand(s Streams) *cobra.Command { return &cobra.Command{Use: "check", Hidden: true} }
