// Package arch holds downshift's architecture rules as tests: every package documents
// itself, and the hot path (the gateway and what it calls per request) imports no
// cold-path package. It has no code of its own.
package arch
