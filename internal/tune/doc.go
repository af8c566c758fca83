// Package tune takes a workload from recorded calls to a fine-tuned candidate. It holds
// the dataset export (Export): a workload's calls, split as its eval set splits them,
// filtered, deduplicated and written as chat fine-tuning files (OpenAI, ShareGPT as
// LLaMA-Factory reads it, or NVIDIA NeMo Customizer's format), with the reference's
// answers as the targets (distillation) and a manifest of what went where. And it holds
// the trainers that run LoRA jobs on those files behind one interface (Trainer: the
// bundled PEFT script as a subprocess, NeMo Customizer, an OpenAI-compatible
// fine-tuning API) with Run, which follows a job to its end and keeps its state, log
// and metrics in the store.
//
// It is cold-path code: the gateway never imports it. It does not choose or split
// calls on its own: the split is the workload's eval set (package eval), so that a
// tuned model is never trained on a call it will be evaluated on. It never redacts:
// payloads are redacted when they are recorded or imported, and are only opened here.
package tune
