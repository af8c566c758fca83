// Package main is the downshift command, the gateway and flywheel; see package cli.
package main

import (
	"os"

	"github.com/downshift-dev/downshift/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
