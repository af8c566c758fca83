// Package cli is downshift's command line: one file per command, each a cobra command
// whose run function takes its arguments and writers and returns an error. It is the
// composition root: serve.go builds the gateway and everything it needs.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Main runs the command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		if !errors.Is(err, errSilent) {
			fmt.Fprintln(stderr, "downshift:", err)
		}
		return 1
	}
	return 0
}

// errSilent marks an error the command has already reported.
var errSilent = errors.New("already reported")

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "downshift",
		Short: "Move an AI agent's routine LLM calls onto small models, safely and measurably",
		Long: `downshift is an OpenAI-compatible gateway that records every call an agent makes,
finds the recurring kinds of call, and moves them onto small language models with evidence.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(commands()...)
	return root
}
