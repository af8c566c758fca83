package cli

import "github.com/spf13/cobra"

// commands lists every subcommand; each lives in its own file.
func commands() []*cobra.Command {
	return []*cobra.Command{
		newServeCmd(),
		newDemoCmd(),
		newCallsCmd(),
		keysCmd(),
		newSimCmd(),
		newImportCmd(),
		newAnalyzeCmd(),
		newEvalCmd(),
		newExportCmd(),
		newTuneCmd(),
		newShiftCmd(),
		newReportCmd(),
		newModelsCmd(),
	}
}

// keysCmd is `downshift keys`: access keys, and encryption keys under it.
func keysCmd() *cobra.Command {
	cmd := newKeysCmd()
	cmd.AddCommand(newKeysEncryptionCmd())
	return cmd
}
