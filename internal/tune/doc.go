// Package tune takes a workload from recorded calls to a fine-tuned candidate. Today it
// holds the dataset export: a workload's calls, split as its eval set splits them,
// filtered, deduplicated and written as chat fine-tuning files (OpenAI, ShareGPT as
// LLaMA-Factory reads it, or NVIDIA NeMo Customizer's format), with the reference's
// answers as the targets (distillation) and a manifest of what went where. The
// trainer drivers that run fine-tuning jobs on those files will live here too.
//
// It is cold-path code: the gateway never imports it. It does not choose or split
// calls on its own: the split is the workload's eval set (package eval), so that a
// tuned model is never trained on a call it will be evaluated on. It never redacts:
// payloads are redacted when they are recorded or imported, and are only opened here.
package tune
