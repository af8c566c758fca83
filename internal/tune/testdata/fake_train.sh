#!/bin/sh
# A stand-in for trainers/peft/train.py in the PEFT driver's tests. It speaks the
# script's protocol (trainers/peft/README.md): one JSON event a line on stdout, text for
# people on stderr, the adapter, metrics.json and loss.csv in --out, exit codes 0 (done),
# 1 (failed), 2 (invalid), 3 (the host lacks something), 143 (stopped by SIGTERM).
#
# FAKE_MODE picks what it does:
#   ok        trains 30 steps and reports done (the default)
#   fail      reports an error event after a step, with a traceback on stderr; exit 1
#   crash     dies with stderr only and no event; exit 3
#   silent    exits 0 without reporting done
#   slow      steps until SIGTERM, then reports cancelled; exit 143
#   stubborn  like slow, but ignores SIGTERM (so only SIGKILL stops it)
#   invalid   (with --dry-run) a summary that says the data would not train; exit 2
# Both slow modes start a child (sleep) in their process group and write its pid to
# OUT/child.pid, so that the test can see the whole group stopped.
# FAKE_ARGS, when set, names a file that gets the arguments, one a line.

out="" data="" dry=0
[ -n "$FAKE_ARGS" ] && printf '%s\n' "$@" > "$FAKE_ARGS"
while [ $# -gt 0 ]; do
	case "$1" in
	--out) out="$2"; shift ;;
	--data) data="$2"; shift ;;
	--dry-run) dry=1 ;;
	esac
	shift
done
mode="${FAKE_MODE:-ok}"
t=0
ev() { t=$((t + 1)); printf '{"event": "%s", %s, "elapsed_s": %d.5}\n' "$1" "$2" "$t"; }

if [ "$dry" = 1 ]; then
	case "$mode" in
	invalid)
		echo "error: train.jsonl:2: messages[1].tool_calls[0].function.arguments is not a JSON string" >&2
		echo '{"event": "dry_run", "ok": false, "data": "'"$data"'", "error_count": 1, "errors": ["train.jsonl:2: arguments"]}'
		exit 2 ;;
	crash)
		echo "python3: can't open file 'train.py': [Errno 2] No such file or directory" >&2
		exit 2 ;;
	*)
		echo "checked 2 train and 1 validation examples" >&2
		echo '{"event": "dry_run", "ok": true, "data": "'"$data"'", "plan": {"steps_per_epoch": 1, "total_steps": 3}, "error_count": 0}'
		exit 0 ;;
	esac
fi

echo "loading base model" >&2
case "$mode" in
ok)
	ev start '"total_steps": 30, "steps_per_epoch": 10, "train_examples": 2, "validation_examples": 1'
	ev eval '"step": 0, "val_loss": 5.5, "val_tokens": 300'
	for s in 10 20 30; do
		printf 'training: %d%%|###  |\r' "$s" >&2
		ev step "\"step\": $s, \"epoch\": 1.0, \"loss\": 3.$s, \"lr\": 0.0002, \"tokens_per_s\": 1000.0"
	done
	echo >&2
	ev eval '"step": 30, "val_loss": 2.75, "val_tokens": 300'
	mkdir -p "$out/adapter"
	echo '{"r": 16, "lora_alpha": 32}' > "$out/adapter/adapter_config.json"
	printf 'step,train_loss,val_loss\n30,3.300000,2.750000\n' > "$out/loss.csv"
	printf '{\n  "status": "succeeded",\n  "train_loss": 3.3,\n  "val_loss": 2.75,\n  "steps": 30,\n  "adapter": "%s"\n}\n' "$out/adapter" > "$out/metrics.json"
	ev done "\"step\": 30, \"train_loss\": 3.3, \"val_loss\": 2.75, \"out\": \"$out\", \"adapter\": \"$out/adapter\", \"wall_time_s\": 1.5"
	exit 0 ;;
fail)
	ev start '"total_steps": 30, "steps_per_epoch": 10'
	ev step '"step": 10, "epoch": 1.0, "loss": 4.1, "lr": 0.0002, "tokens_per_s": 900.0'
	echo "Traceback (most recent call last):" >&2
	echo '  File "train.py", line 1012, in train' >&2
	echo "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB" >&2
	ev error '"code": 1, "message": "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"'
	exit 1 ;;
crash)
	echo "error: torch is not installed on this host" >&2
	exit 3 ;;
silent)
	ev start '"total_steps": 30, "steps_per_epoch": 10'
	exit 0 ;;
slow | stubborn)
	if [ "$mode" = stubborn ]; then
		trap '' TERM
	else
		trap 'ev cancelled "\"step\": $s"; exit 143' TERM
	fi
	sleep 30 &
	echo $! > "$out/child.pid"
	ev start '"total_steps": 100000, "steps_per_epoch": 1000'
	s=0
	while [ $s -lt 2000 ]; do
		s=$((s + 1))
		ev step "\"step\": $s, \"epoch\": 0.01, \"loss\": 2.0, \"lr\": 0.0002, \"tokens_per_s\": 10.0"
		sleep 0.02
	done
	exit 1 ;;
esac
echo "unknown FAKE_MODE $mode" >&2
exit 2
