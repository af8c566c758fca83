// Package peft holds the bundled PEFT LoRA trainer script and its tests.
//
// train.py is a standalone Python program (PyTorch, transformers, peft; bitsandbytes for
// QLoRA) that the tune package runs as a subprocess on a GPU host: it reads a directory
// written by `downshift export --format openai`, trains a LoRA adapter and streams its
// progress as JSON lines on stdout. README.md documents its flags, chat template, outputs
// and protocol; gpu_check.sh is the one-shot check to run on a GPU machine.
//
// This package has no Go API and is not the trainer's driver: it exists so that `go test`
// checks the script's dry run (data and configuration validation, which imports no ML
// library) on any machine with python3.
package peft
