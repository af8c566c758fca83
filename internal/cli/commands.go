package cli

import "github.com/spf13/cobra"

// commands lists every subcommand; each lives in its own file.
func commands() []*cobra.Command {
	return []*cobra.Command{
		newServeCmd(),
		newDemoCmd(),
		newCallsCmd(),
		newSimCmd(),
	}
}
