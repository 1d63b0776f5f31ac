"""Every bad input is one line, `error: <what>: <why>`, and exit status 2: never a traceback,
never silently accepted. Each case is a command line (placeholders in braces name the bad
files made below) and a piece of the one line it must print. Commands run in-process through
`vad.cli.main`; nothing reaches the network but loopback ports where nothing listens."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, moving_square, write_video
from streams.local_servers import free_port
from vad.cli import main

CASES: list[tuple[str, str]] = [
    # --- the command line itself ---------------------------------------------------------
    ("", "the following arguments are required: command"),
    ("nosuch", "invalid choice: 'nosuch'"),
    ("run --bogus {video}", "unrecognized arguments: --bogus"),
    ("config", "the following arguments are required: config_command"),
    ("data fetch", "the following arguments are required: WHAT"),
    ("reason", "the following arguments are required: reason_command"),
    ("fit {video}", "the following arguments are required: --scorer, --out"),
    ("eval", "the following arguments are required: dataset"),

    # --- config files and --set ------------------------------------------------------------
    ("config show --config {missing}", "cannot read config (No such file or directory)"),
    ("config show --config {binary_yaml}", "binary.yaml: not a text file"),
    ("config show --config {nested_yaml}", "nested.yaml: nested too deeply"),
    ("config show --config {invalid_yaml}", "invalid.yaml: invalid YAML"),
    ("config show --config {list_yaml}", "list.yaml: the config must be a mapping of sections"),
    ("config show --config {tmp}", "cannot read config"),
    ("config show --config {unknown_key_yaml}", "events.treshold: Extra inputs are not permitted"),
    ("config show --config {empty_yaml} --set nope=1", "nope: Extra inputs are not permitted"),
    ("config show --set events.threshold=.nan", "events.threshold: Input should be a finite number"),
    ("config show --set events.threshold=.inf", "events.threshold: Input should be a finite number"),
    ("config show --set events.threshold=1e999", "events.threshold: Input should be a finite number"),
    ("config show --set events.threshold=-.inf", "events.threshold: Input should be a finite number"),
    ("config show --set events.threshold=high", "events.threshold: Input should be a valid number"),
    ("config show --set events.threshold=[1,", "the value is not YAML"),
    ("config show --set 'events.threshold={{a: [}}'", "the value is not YAML"),
    ("config show --set events.threshold", "expected KEY=VALUE"),
    ("config show --set =3", "expected KEY=VALUE"),
    ("config show --set events..threshold=3", "expected KEY=VALUE"),
    ("config show --set events.threshold.x=3", "events.threshold: Input should be a valid number"),
    ("config show --set scorers.5.weight=2", "'5' is not an index of a list of 1 item(s)"),
    ("config show --set scorers.x.weight=2", "'x' is not an index"),
    ("config show --set scorers=[]", "scorers: List should have at least 1 item"),
    ("config show --set scorers.0.weight=0", "scorers.0.weight: Input should be greater than 0"),
    ("config show --set scorers.0.weight=.nan", "scorers.0.weight: Input should be a finite number"),
    ("config show --set 'scorers=[{{name: nope}}]'", "scorers.0: Input tag 'nope' found"),
    ("config show --set events.release_threshold=9", "release_threshold must not exceed threshold"),
    ("config show --set events.min_duration=0", "events.min_duration: Input should be greater than or equal to 1"),
    ("config show --set events.merge_gap=-1", "events.merge_gap: Input should be greater than or equal to 0"),
    ("config show --set window.batch=0", "window.batch: Input should be greater than or equal to 1"),
    ("config show --set postprocess.smoothing_sigma=-1", "postprocess.smoothing_sigma: Input should be greater than or equal to 0"),
    ("config show --set postprocess.adapt_below=.nan", "postprocess.adapt_below: Input should be a finite number"),
    ("config show --set device=tpu", "device: Input should be 'auto', 'cpu' or 'cuda'"),
    ("config show --set store=5", "store: Input should be a valid dictionary"),
    ("config show --set store.redis.spool_max_mb=0", "store.redis.spool_max_mb: Input should be greater than 0"),
    ("config show --set kafka.bootstrap=::::", "kafka.bootstrap: Input should be a valid string"),
    ("config show --set 'kafka.bootstrap=\"::::\"'", "kafka.bootstrap: '::::' is not HOST:PORT"),
    ("config show --set kafka.bootstrap=host:99999", "'host:99999' is not HOST:PORT"),
    ("config show --set kafka.bootstrap=host", "'host' is not HOST:PORT"),
    ("config show --set kafka.acks=0", "kafka.acks"),
    ("config show --set kafka.max_message_bytes=10", "kafka.max_message_bytes: Input should be greater than or equal to 1024"),
    ("config show --set live.reconnect_max_s=0.5", "reconnect_max_s must not be below reconnect_initial_s"),
    ("config show --set live.reconnect_jitter=2", "live.reconnect_jitter: Input should be less than or equal to 1"),
    ("config show --set 'cameras={{bad id: {{}}}}'", "cameras.bad id.[key]: String should match pattern"),
    ("config show --set 'cameras={{gate: {{events: {{threshold: .nan}}}}}}'", "cameras.gate.events.threshold: Input should be a finite number"),
    ("config show --set 'cameras={{gate: {{nope: 1}}}}'", "cameras.gate.nope: Extra inputs are not permitted"),
    ("config show --set reasoning.keyframes=0", "reasoning.keyframes: Input should be greater than or equal to 1"),
    ("config show --set reasoning.deduction=llm", "deduction llm needs reasoning.llm"),
    ("config show --set reasoning.llm=ftp://x", "reasoning.llm.spec: String should match pattern"),
    ("config show --set reasoning.smoothing.alpha=0", "reasoning.smoothing.alpha: Input should be greater than 0"),
    ("config show --set publish.fps=5 --set publish.max_rate=true", "fps and max_rate exclude each other"),
    ("config show --set publish.jpeg_quality=101", "publish.jpeg_quality: Input should be less than or equal to 100"),
    ("config show --set dashboard.port=0", "dashboard.port: Input should be greater than 0"),
    ("config show --set dashboard.refresh=.nan", "dashboard.refresh: Input should be a finite number"),
    ("config show --set 'dashboard.auth.users={{alice: secret}}'", "the password of 'alice' is not an Argon2 hash"),
    # outputs, clips, retention
    ("config show --set 'outputs.targets=[{{kind: mqtt}}]'", "outputs.targets.0: Input tag 'mqtt' found"),
    ("config show --set 'outputs.targets=[{{kind: webhook, url: ftp://x}}]'", "outputs.targets.0.url: String should match pattern"),
    ("config show --set 'outputs.targets=[{{kind: webhook, url: \"http://h/\", secret_env: A-B}}]'", "outputs.targets.0.secret_env: String should match pattern"),
    ("config show --set 'outputs.targets=[{{kind: kafka, topic: \"a b\"}}]'", "outputs.targets.0.topic: String should match pattern"),
    ("config show --set 'outputs.targets=[{{kind: kafka, bootstrap: \"::::\"}}]'", "outputs.targets.0.bootstrap: '::::' is not HOST:PORT"),
    ("config show --set outputs.retry_initial_s=5 --set outputs.retry_max_s=1", "retry_max_s must not be below retry_initial_s"),
    ("config show --set outputs.dashboard_url=cctv.example.org", "outputs.dashboard_url: String should match pattern"),
    ("config show --set clips.max_seconds=0", "clips.max_seconds: Input should be greater than 0"),
    ("config show --set clips.crf=99", "clips.crf: Input should be less than or equal to 51"),
    ("config show --set clips.pre_roll_s=.nan", "clips.pre_roll_s: Input should be a finite number"),
    ("config show --set store.retention.max_mb=-1", "store.retention.max_mb: Input should be greater than 0"),
    ("config show --set 'dashboard.auth.users={{\"bad name\": x}}'", "String should match pattern"),
    ("config show --set dashboard.auth.max_failures=0", "dashboard.auth.max_failures: Input should be greater than or equal to 1"),
    ("config show --set scorers.0.params.size=[0,4]", "scorers.0.params.size"),
    ("config show --set 'scorers=[{{name: motion, params: {{bank_size: 2, k: 2}}}}]'", "bank_size (2) must exceed k (2)"),

    # --- fit -------------------------------------------------------------------------------
    ("fit {missing} --scorer frame-diff --out {out}", "no such file or folder"),
    ("fit {fake_video} --scorer frame-diff --out {out}", "fake.mp4"),
    ("fit {empty_video} --scorer frame-diff --out {out}", "empty.mp4"),
    ("fit {empty_dir} --scorer frame-diff --out {out}", "empty"),
    ("fit {video} --scorer nope --out {out}", "scorers.0: Input tag 'nope' found"),
    ("fit {video} --scorer frame-diff --out {out} --param", "expected one argument"),
    ("fit {video} --scorer frame-diff --out {out} --param size", "--param 'size': expected KEY=VALUE"),
    ("fit {video} --scorer frame-diff --out {out} --param =3", "--param '=3': expected KEY=VALUE"),
    ("fit {video} --scorer frame-diff --out {out} --param nope=3", "scorers.0.params.nope: Extra inputs are not permitted"),
    ("fit {video} --scorer frame-diff --out {out} --param size=[1,", "--param 'size=[1,': the value is not YAML"),
    ("fit {video} --scorer frame-diff --out {out} --param size=big", "scorers.0.params.size"),
    ("fit {video} --scorer ct-d2gan --out {out} --param iterations=-1", "scorers.0.params.iterations: Input should be greater than or equal to 0"),
    ("fit {video} --scorer ct-d2gan --out {out} --param lr_generator=.nan", "scorers.0.params.lr_generator: Input should be a finite number"),
    ("fit {video} --anomalous {video} --scorer frame-diff --out {out}", "--anomalous: frame-diff is one-class"),
    ("fit {video} --anomalous {missing} --scorer vadclip --out {out}", "no such file or folder"),
    ("fit {video} --scorer vadclip --out {out}", "weakly supervised training needs a label for every video"),
    ("fit {video_list} --anomalous {video} --scorer vadclip --out {out}", "a list CSV holds the labels"),
    ("fit {bad_video_list} --scorer vadclip --out {out}", "expected a CSV with a path,label header"),
    ("fit {video_list_missing} --scorer vadclip --out {out}", "no-such-file: no such file"),
    ("fit {video} --scorer frame-diff --out {unwritable}", "vad-cannot-write-here: cannot write the checkpoint (No such file or directory)"),
    ("fit {video} --scorer frame-diff --out {a_file}", "a-file.txt: cannot write the checkpoint (File exists)"),

    # --- run: sources, checkpoints, stores -------------------------------------------------
    ("run {missing} --checkpoint {ckpt}", "no such file or folder"),
    ("run {fake_video} --checkpoint {ckpt}", "fake.mp4"),
    ("run {empty_video} --checkpoint {ckpt}", "empty.mp4"),
    ("run {empty_dir} --checkpoint {ckpt}", "empty"),
    ("run {video}", "has no checkpoint"),
    ("run --checkpoint {ckpt}", "nothing to run"),
    ("run {video} {video} --camera a --checkpoint {ckpt}", "--camera names the camera of a single SOURCE"),
    ("run {video} --checkpoint {ckpt} --checkpoint {ckpt}", "2 --checkpoint for 1 configured scorers"),
    ("run {video} --scorer frame-diff+motion --checkpoint {ckpt}", "1 --checkpoint for 2 scorers"),
    ("run {video} --checkpoint {missing}", "not a checkpoint (no config.json)"),
    ("run {video} --checkpoint {a_file}", "not a checkpoint (no config.json)"),
    ("run {video} --checkpoint {ckpt_bad_json}", "config.json: invalid JSON"),
    ("run {video} --checkpoint {ckpt_binary_json}", "config.json: invalid JSON"),
    ("run {video} --checkpoint {ckpt_list_json}", "config.json: missing the 'scorer' name"),
    ("run {video} --checkpoint {ckpt_unknown_scorer}", "unknown scorer 'nope'"),
    ("run {video} --checkpoint {ckpt_bad_params}", "config.json: config: nope: Extra inputs are not permitted"),
    ("run {video} --checkpoint {ckpt_std_zero}", "calibration: calibration needs a finite mean and a positive std"),
    ("run {video} --checkpoint {ckpt_std_nan}", "calibration: calibration needs a finite mean and a positive std"),
    ("run {video} --checkpoint {ckpt_mean_inf}", "calibration: calibration needs a finite mean and a positive std"),
    ("run {video} --checkpoint {ckpt_calibration_text}", "calibration"),
    ("run {video} --checkpoint {ckpt_no_tensors}", "incomplete checkpoint (no model.safetensors)"),
    ("run {video} --checkpoint {ckpt_bad_tensors}", "model.safetensors: unreadable tensors"),
    ("run {video} --scorer motion --checkpoint {motion_dtype}", "is float64, expected float32"),
    ("run {video} --scorer motion --checkpoint {motion_shape}", "expected"),
    ("run {video} --scorer motion --checkpoint {motion_nan}", "holds NaN or infinite values"),
    ("run {video} --scorer motion --checkpoint {motion_missing_tensor}", "missing tensor"),
    ("run {video} --scorer motion --checkpoint {ckpt}", "holds a 'frame-diff' scorer, not 'motion'"),
    ("run {video} --scorer motion --checkpoint {motion} --set scorers.0.params.block=8", "params.block=8 differs from the checkpoint's 16"),
    ("run {video} --checkpoint {ckpt} --store postgres://h/db", "unknown alert store scheme 'postgres'"),
    ("run {video} --checkpoint {ckpt} --store sqlite://", "a SQLite store URL needs a file"),
    ("run {video} --checkpoint {ckpt} --store sqlite:///{tmp}", "not a usable SQLite alert store"),
    ("run {video} --checkpoint {ckpt} --store sqlite:///{a_file}", "not a usable SQLite alert store"),
    ("run {video} --checkpoint {ckpt} --store redis:///0", "a Redis URL needs a host"),
    ("run {video} --checkpoint {ckpt} --set events.threshold=.nan", "events.threshold: Input should be a finite number"),
    ("run {video} --checkpoint {ckpt} --config {binary_yaml}", "not a text file"),
    ("run {video} --checkpoint {ckpt} --set reasoning.rules={missing}", "cannot read rules"),
    ("run {video} --checkpoint {ckpt} --set reasoning.rules={empty_yaml}", "no rules found"),
    ("run {video} --checkpoint {ckpt} --set 'outputs.targets=[{{kind: webhook, url: \"http://127.0.0.1:{closed_port}/\", secret_env: VAD_NO_SUCH_SECRET}}]'", "set the HMAC key in $VAD_NO_SUCH_SECRET"),
    ("run {video} --checkpoint {ckpt} --set 'outputs.targets=[{{kind: kafka, bootstrap: \"127.0.0.1:{closed_port}\"}}]' --set outputs.queue_dir={a_file}", "cannot open the delivery queue"),
    ("run rtsp://127.0.0.1:{closed_port}/cam --checkpoint {ckpt} --set live.give_up_after_s=0.5", "/cam: no frames for 0.5 s, gave up (last error: cannot open (Connection refused))"),

    # --- eval ------------------------------------------------------------------------------
    ("eval {missing} --scorer frame-diff", "no such dataset folder"),
    ("eval {empty_dir} --scorer frame-diff", "not a benchmark folder"),
    ("eval {bench_no_video} --scorer frame-diff", "labelled in test_labels.csv but missing"),
    ("eval {bench_bad_labels} --scorer frame-diff", "expected a CSV with integer columns video,frame,label"),
    ("eval {bench_gappy_labels} --scorer frame-diff", "frames are not 0.."),
    ("eval {bench_short_labels} --scorer frame-diff --checkpoint {ckpt} --out {out}", "01: more frames decoded than labelled (24 > 5)"),
    ("eval {bench_bad_mask} --scorer frame-diff --checkpoint {ckpt} --out {out}", "01.npz: not a readable .npz of masks"),
    ("eval {bench_mask_no_key} --scorer frame-diff --checkpoint {ckpt} --out {out}", "01.npz: no 'masks' array in the archive"),
    ("eval {bench_mask_shape} --scorer frame-diff --checkpoint {ckpt} --out {out}", "01.npz: masks are bool (3, 7), expected 24 frames x height x width"),
    ("eval {bench_mask_pickle} --scorer frame-diff --checkpoint {ckpt} --out {out}", "01.npz: not a readable .npz of masks (Object arrays cannot be loaded"),
    ("eval {bench} --scorer frame-diff --checkpoint {ckpt} --out {unwritable}", "vad-cannot-write-here: cannot write the report"),
    ("eval {bench} --scorer frame-diff --checkpoint {ckpt} --out {a_file}", "a-file.txt: cannot write the report (File exists)"),
    ("eval {bench} --scorer frame-diff", "no train split to fit 'frame-diff'"),
    ("eval {bench} --scorer nope", "Input tag 'nope' found"),
    ("eval {bench} --scorer frame-diff --checkpoint {ckpt_std_zero} --out {out}", "positive std"),

    # --- serve and publish -----------------------------------------------------------------
    ("serve --bootstrap :::: --checkpoint {ckpt}", "kafka.bootstrap: '::::' is not HOST:PORT"),
    ("serve --bootstrap h:0 --checkpoint {ckpt}", "'h:0' is not HOST:PORT"),
    ("serve --partitions 0 --checkpoint {ckpt}", "serve.partitions: Input should be greater than or equal to 1"),
    ("serve --partitions x --checkpoint {ckpt}", "argument --partitions: invalid int value"),
    ("serve --queue-size 0 --checkpoint {ckpt}", "serve.queue_size: Input should be greater than or equal to 1"),
    ("serve --commit-interval -1 --checkpoint {ckpt}", "serve.commit_interval: Input should be greater than 0"),
    ("serve --from middle --checkpoint {ckpt}", "argument --from: invalid choice"),
    ("serve --max-message-bytes 5 --checkpoint {ckpt}", "kafka.max_message_bytes: Input should be greater than or equal to 1024"),
    ("serve --bootstrap 127.0.0.1:{closed_port}", "has no checkpoint"),
    ("serve --bootstrap 127.0.0.1:{closed_port} --checkpoint {ckpt_std_nan}", "positive std"),
    ("serve --bootstrap 127.0.0.1:{closed_port} --checkpoint {ckpt} --store postgres://h/db", "unknown alert store scheme"),
    ("serve --bootstrap 127.0.0.1:{closed_port} --checkpoint {ckpt} --set 'outputs.targets=[{{kind: webhook, url: \"http://127.0.0.1:{closed_port}/\", secret_env: VAD_NO_SUCH_SECRET}}]'", "set the HMAC key in $VAD_NO_SUCH_SECRET"),
    ("publish {video} --bootstrap ::::", "kafka.bootstrap: '::::' is not HOST:PORT"),
    ("publish {video} --fps 0", "publish.fps: Input should be greater than 0"),
    ("publish {video} --fps -3", "publish.fps: Input should be greater than 0"),
    ("publish {video} --fps nan", "publish.fps: Input should be a finite number"),
    ("publish {video} --fps 5 --max", "argument --max: not allowed with argument --fps"),
    ("publish {video} --limit 0", "publish.limit: Input should be greater than or equal to 1"),
    ("publish {video} --jpeg-quality 0", "publish.jpeg_quality: Input should be greater than or equal to 1"),
    ("publish {video} --camera a,b", "2 camera ids for 1 sources"),
    ("publish {missing} --bootstrap 127.0.0.1:{closed_port}", "no such file or folder"),
    ("publish {fake_video} --bootstrap 127.0.0.1:{closed_port}", "fake.mp4"),
    ("publish --bootstrap 127.0.0.1:{closed_port}", "nothing to publish"),
    ("publish {video} {video} --bootstrap 127.0.0.1:{closed_port}", "camera ids must be unique"),
    # Nothing listens there: kafka-python gives up after its 30 s bootstrap timeout.
    ("publish {video} --bootstrap 127.0.0.1:{closed_port}", "cannot reach Kafka (KafkaTimeoutError: Unable to bootstrap"),

    # --- dashboard -------------------------------------------------------------------------
    ("dashboard --port 0", "argument --port: 0 is not a TCP port"),
    ("dashboard --port 70000", "argument --port: 70000 is not a TCP port"),
    ("dashboard --port http", "argument --port: http is not a TCP port"),
    ("dashboard --refresh 0", "dashboard.refresh: Input should be greater than 0"),
    ("dashboard --refresh nan", "dashboard.refresh: Input should be a finite number"),
    ("dashboard --threshold inf", "dashboard.threshold: Input should be a finite number"),
    ("dashboard --host 0.0.0.0", "an exposed dashboard needs sign-in"),
    ("dashboard --host 192.168.1.20 --store sqlite:///{tmp}/d.db", "an exposed dashboard needs sign-in"),
    ("dashboard --set dashboard.auth.oidc=true --set dashboard.auth.oidc_secrets={missing}", "no such file"),
    ("dashboard --config {binary_yaml}", "not a text file"),

    # --- data ------------------------------------------------------------------------------
    ("data fetch nope --cache {tmp}/cache", "nope: unknown dataset"),
    ("data fetch ped2 --cache {tmp}/cache --url http://127.0.0.1:{closed_port}/ucsd.tar.gz --no-progress", "127.0.0.1"),
    ("data fetch yolox-nano --to {tmp}/y.onnx --set data.yolox_url=http://127.0.0.1:{closed_port}/y.onnx --no-progress", "127.0.0.1"),
    ("data fetch ped2 --cache {a_file}/cache --url http://127.0.0.1:{closed_port}/u.tgz --no-progress", "cache"),

    # --- reason ----------------------------------------------------------------------------
    ("reason eval {missing} --labels {labels} --rules {rules}", "not a directory of description files"),
    ("reason eval {empty_dir} --labels {labels} --rules {rules}", "no description files"),
    ("reason eval {descriptions} --labels {missing} --rules {rules}", "cannot read labels"),
    ("reason eval {descriptions} --labels {bad_labels} --rules {rules}", "expected a CSV with integer columns"),
    ("reason eval {descriptions} --labels {labels}", "--rules: a rules file is needed"),
    ("reason eval {descriptions} --labels {labels} --rules {missing}", "cannot read rules"),
    ("reason eval {descriptions} --labels {labels} --rules {empty_yaml}", "no rules found"),
    ("reason eval {descriptions} --labels {labels} --rules {rules} --videos 99", "--videos: not in the labels: 99"),
    ("reason eval {descriptions} --labels {labels} --rules {rules} --alpha 0", "argument --alpha: 0 is not in (0, 1]"),
    ("reason eval {descriptions} --labels {labels} --rules {rules} --alpha nan", "argument --alpha: nan is not in (0, 1]"),
    ("reason eval {descriptions} --labels {labels} --rules {rules} --window 0", "argument --window: 0 is not at least 1"),
    ("reason eval {descriptions} --labels {labels} --rules {rules} --span 0", "argument --span: 0 is not at least 1"),
    ("reason eval {descriptions} --labels {labels} --rules {rules} --threshold x", "--threshold 'x': expected a finite number or video-mean"),
    ("reason eval {descriptions} --labels {labels} --rules {rules} --threshold nan", "--threshold 'nan': expected a finite number"),
    ("reason eval {descriptions} --labels {labels} --rules {rules} --deduction nope", "unknown deducer 'nope'"),
    ("reason eval {descriptions} --labels {labels} --rules {rules} --normal {descriptions} --deduction keyword", "--normal applies to --deduction fast"),
    ("reason eval {descriptions} --labels {labels} --rules {rules} --robust", "--robust needs --llm"),
    ("reason eval {descriptions} --labels {labels} --rules {rules} --deduction llm", "llm deduction needs an LLM"),
    ("reason eval {descriptions} --labels {labels} --rules {rules} --limit -1", "argument --limit: -1 is not at least 1"),
    ("reason induce {descriptions} --out {out}/rules.txt", "--llm: an LLM is needed"),
    ("reason induce {missing} --llm openai:http://127.0.0.1:{closed_port}/v1 --out {out}/r.txt", "no such description file or directory"),
    ("reason induce {descriptions} --llm ftp://x --out {out}/r.txt", "reasoning.llm.spec: String should match pattern"),
    ("reason induce {descriptions} --llm openai:http://127.0.0.1:{closed_port}/v1 --batches 0 --out {out}/r.txt", "reasoning.induction.batches"),
    ("reason describe {missing} --out {out}", "no such file or folder"),
    ("reason describe {video} --out {out} --describer files", "argument --describer: invalid choice: 'files'"),

    # --- vane ------------------------------------------------------------------------------
    ("vane eval {empty_dir} --out {out}", "the following arguments are required: --answerer"),
    ("vane eval {missing} --answerer hf:x --out {out}", "no such file or folder"),
    ("vane eval {empty_dir} --answerer hf:x --out {out}", "neither VANE-Bench form"),
    ("vane eval {a_file} --answerer hf:x --out {out}", "neither VANE-Bench form"),
    ("vane eval {qa_without_clips} --answerer hf:x --out {out}", "no clip folder 'video_1_subset_1'"),
    ("vane eval {qa_without_clips} --answerer hf:x --out {out} --frames 0", "vane.frames: Input should be greater than or equal to 1"),
    ("vane eval {qa_without_clips} --answerer hf:x --out {out} --timeout -1", "vane.timeout_s: Input should be greater than 0"),
    ("vane eval {qa_without_clips} --answerer hf:x --out {out} --retries -1", "vane.retries: Input should be greater than or equal to 0"),
    ("vane build {bench} --annotations {missing} --out {out}", "cannot read annotations (No such file or directory)"),
    ("vane build {bench} --annotations {invalid_yaml} --out {out}", "not a YAML annotations file"),
    ("vane build {missing} --annotations {vane_annotations} --out {out}", "no such dataset folder"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """Bad (and a few good) files for the cases, by placeholder name."""
    tmp = tmp_path_factory.mktemp("bad-input")
    paths: dict[str, Path] = {"tmp": tmp, "missing": tmp / "no-such-file", "out": tmp / "out",
                              "a_file": tmp / "a-file.txt", "empty_dir": tmp / "empty",
                              "unwritable": Path("/proc/vad-cannot-write-here")}
    paths["a_file"].write_text("just text\n")
    paths["empty_dir"].mkdir()
    video = write_video(tmp / "clip.mp4", moving_square(24))
    paths["video"] = video
    (tmp / "fake.mp4").write_text("not a video at all " * 50)
    paths["fake_video"] = tmp / "fake.mp4"
    (tmp / "empty.mp4").write_bytes(b"")
    paths["empty_video"] = tmp / "empty.mp4"

    # Configs.
    for name, text in {"binary_yaml": bytes(range(256)),
                       "nested_yaml": ("a: " + "[" * 5000 + "]" * 5000 + "\n").encode(),
                       "invalid_yaml": b"events: [1,\n", "list_yaml": b"- a\n- b\n",
                       "unknown_key_yaml": b"events:\n  treshold: 2\n", "empty_yaml": b""}.items():
        path = tmp / (name.removesuffix("_yaml") + ".yaml")
        path.write_bytes(text)
        paths[name] = path

    # A fitted frame-diff checkpoint, and tampered copies of it.
    ckpt = tmp / "fd"
    assert main(["fit", str(video), "--scorer", "frame-diff", "--out", str(ckpt),
                 "--no-progress"]) == 0
    paths["ckpt"] = ckpt
    meta = json.loads((ckpt / "config.json").read_text())

    def tampered(name: str, config: str | bytes | dict | list | None = None,
                 tensors: bytes | None = None, source: Path = ckpt) -> Path:
        target = tmp / name
        shutil.copytree(source, target)
        if config is not None:
            data = config if isinstance(config, (str, bytes)) else json.dumps(config)
            (target / "config.json").write_bytes(data if isinstance(data, bytes) else
                                                 data.encode())
        if tensors is not None:
            (target / "model.safetensors").write_bytes(tensors)
        paths[name] = target
        return target

    tampered("ckpt_bad_json", "{")
    tampered("ckpt_binary_json", bytes(range(256)))
    tampered("ckpt_list_json", [1, 2])
    tampered("ckpt_unknown_scorer", {**meta, "scorer": "nope"})
    tampered("ckpt_bad_params", {**meta, "config": {**meta.get("config", {}), "nope": 1}})
    calibration = meta["calibration"]
    tampered("ckpt_std_zero", {**meta, "calibration": {**calibration, "std": 0}})
    # json writes these as NaN / Infinity, which Python's json reads back.
    tampered("ckpt_std_nan", {**meta, "calibration": {**calibration, "std": float("nan")}})
    tampered("ckpt_mean_inf", {**meta, "calibration": {**calibration, "mean": float("inf")}})
    tampered("ckpt_calibration_text", {**meta, "calibration": "high"})
    (tampered("ckpt_no_tensors") / "model.safetensors").unlink()
    tampered("ckpt_bad_tensors", tensors=b"\x00garbage" * 100)

    # The committed motion checkpoint with tensors of the wrong dtype, shape or values.
    from safetensors.numpy import load_file, save_file

    motion = REPO / "checkpoints" / "motion-ped2"
    paths["motion"] = motion
    tensors = load_file(str(motion / "model.safetensors"))
    name, first = next(iter(tensors.items()))
    for case, replaced in {"motion_dtype": first.astype(np.float64),
                           "motion_shape": first.reshape(-1)[:-1] if first.size > 1 else
                           np.zeros((2, 2), np.float32),
                           "motion_nan": np.full_like(first, np.nan)}.items():
        target = tampered(case, source=motion)
        save_file({**tensors, name: np.ascontiguousarray(replaced)},
                  str(target / "model.safetensors"))
    target = tampered("motion_missing_tensor", source=motion)
    save_file({k: v for k, v in tensors.items() if k != name}, str(target / "model.safetensors"))

    # Benchmarks for eval: one good, the others broken in one way each.
    def bench(name: str, labels: str | None = "video,frame,label\n" +
              "".join(f"01,{i},{int(i > 12)}\n" for i in range(24)),
              video_file: bool = True, mask: object = None) -> Path:
        root = tmp / name
        (root / "test").mkdir(parents=True)
        if video_file:
            shutil.copy(video, root / "test" / "01.mp4")
        if labels is not None:
            (root / "test_labels.csv").write_text(labels)
        if mask is not None:
            (root / "test_masks").mkdir()
            target = root / "test_masks" / "01.npz"
            if isinstance(mask, bytes):
                target.write_bytes(mask)
            else:
                np.savez(target, **mask)
        paths[name] = root
        return root

    bench("bench")
    bench("bench_no_video", video_file=False)
    bench("bench_bad_labels", labels="video,frame,label\n01,zero,1\n")
    bench("bench_gappy_labels", labels="video,frame,label\n01,0,0\n01,5,1\n")
    bench("bench_short_labels", labels="video,frame,label\n" +
          "".join(f"01,{i},{i % 2}\n" for i in range(5)))
    bench("bench_bad_mask", mask=b"not an npz archive")
    bench("bench_mask_no_key", mask={"other": np.zeros((24, 64, 96), bool)})
    bench("bench_mask_shape", mask={"masks": np.zeros((3, 7), bool)})
    bench("bench_mask_pickle", mask={"masks": np.array([{"a": 1}] * 24, dtype=object)})

    # Reasoning inputs.
    descriptions = tmp / "descriptions"
    descriptions.mkdir()
    (descriptions / "01.txt").write_text("There are 2 people walking.\n" * 24)
    paths["descriptions"] = descriptions
    (tmp / "labels.csv").write_text("video,frame,label\n" +
                                    "".join(f"01,{i},{int(i > 12)}\n" for i in range(24)))
    paths["labels"] = tmp / "labels.csv"
    (tmp / "bad_labels.csv").write_text("a;b\n1;2\n")
    paths["bad_labels"] = tmp / "bad_labels.csv"
    paths["rules"] = REPO / "configs" / "rules" / "ped2" / "rule_ped2.txt"
    (tmp / "list.csv").write_text(f"path,label\n{video},Normal\n")
    paths["video_list"] = tmp / "list.csv"
    (tmp / "bad-list.csv").write_text("a;b\n1;2\n")
    paths["bad_video_list"] = tmp / "bad-list.csv"
    (tmp / "missing-list.csv").write_text(f"path,label\n{paths['missing']},Fighting\n")
    paths["video_list_missing"] = tmp / "missing-list.csv"
    qa = tmp / "qa"
    qa.mkdir()
    (qa / "video_1_subset_1_qa.txt").write_text("not a question\n")
    paths["qa_without_clips"] = qa
    paths["vane_annotations"] = REPO / "datasets" / "vane" / "ped2.yaml"

    values = {name: str(path) for name, path in paths.items()}
    values["closed_port"] = str(free_port())  # nothing listens there
    return values


PROGRESS_BAR = re.compile(r"\[\d\d:\d\d[<,]")  # tqdm's [elapsed<remaining, rate]


def _refuse_exec(*args) -> None:
    raise AssertionError(f"accepted: it would start {args[1][:6]}")


@pytest.mark.parametrize("command, expected", CASES, ids=[c for c, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(command, expected, files, capsys, monkeypatch):
    monkeypatch.setattr(os, "execve", _refuse_exec)  # a dashboard case that passed would serve
    monkeypatch.setenv("HOME", files["tmp"])  # spools and caches stay in the test's folder
    monkeypatch.chdir(files["tmp"])  # so do default output folders (runs/...)
    argv = [part.format(**files) for part in shlex.split(command)]
    status = main(argv)
    captured = capsys.readouterr()
    assert status == 2, f"exit {status}: {captured.out[-500:]} {captured.err[-500:]}"
    # Progress bars share stderr; what is left is the one line.
    lines = [line.rsplit("\r", 1)[-1] for line in captured.err.split("\n")]
    lines = [line for line in lines if line and not PROGRESS_BAR.search(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert expected.format(**files) in lines[0], lines[0]
