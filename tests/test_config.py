"""The typed config tree: defaults in one place, validation at load time, per-camera sections,
`--set` overrides and `vad config show`."""

import pytest
import yaml

from vad.cli import main
from vad.config import VadConfig, config_yaml, load_config
from vad.errors import VadError


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    return err.strip()


def test_unknown_and_mistyped_keys_fail_at_load_time(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("events:\n  treshold: 2\n")
    assert "events.treshold: Extra inputs are not permitted" in one_line_error(
        capsys, ["config", "show", "--config", str(config)])
    config.write_text("reasoning:\n  rules: r.txt\n  describer: {kind: detector, "
                      "score_threshold: high}\n")
    assert "reasoning.describer.score_threshold: Input should be a valid number" in \
        one_line_error(capsys, ["run", "x.mp4", "--config", str(config)])
    config.write_text("scorers: [{name: motion, params: {blocks: 8}}]\n")
    assert "scorers.0.params.blocks: Extra inputs" in one_line_error(
        capsys, ["config", "show", "--config", str(config)])


@pytest.mark.parametrize("value", [".nan", ".inf", "1e999", "-.inf"])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(VadError, match="events.threshold: Input should be a finite number"):
        load_config(None, [f"events.threshold={value}"])


def test_bad_files_and_values_are_one_line_errors(tmp_path, capsys):
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)))
    assert "binary.yaml: not a text file" in one_line_error(
        capsys, ["config", "show", "--config", str(binary)])
    nested = tmp_path / "nested.yaml"
    nested.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested.yaml: " in one_line_error(capsys, ["config", "show", "--config", str(nested)])
    assert "the value is not YAML" in one_line_error(
        capsys, ["config", "show", "--set", "events.threshold=[1,"])
    assert "expected KEY=VALUE" in one_line_error(capsys, ["config", "show", "--set", "novalue"])
    assert "kafka.bootstrap: '::::' is not HOST:PORT" in one_line_error(
        capsys, ["serve", "--bootstrap", "::::", "--checkpoint", "x"])
    assert "release_threshold must not exceed threshold" in one_line_error(
        capsys, ["config", "show", "--set", "events.release_threshold=9"])


def test_config_show_prints_every_section_and_reads_back(capsys):
    assert main(["config", "show", "--set", "cameras={gate: {events: {threshold: 4}}}"]) == 0
    commented = capsys.readouterr().out
    for section in VadConfig.model_fields:
        assert f"\n{section}:" in f"\n{commented}", section
    assert "# an event opens when the score reaches this" in commented
    assert main(["config", "show", "--plain", "--set",
                 "cameras={gate: {events: {threshold: 4}}}"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert VadConfig.model_validate(shown) == load_config(
        None, ["cameras={gate: {events: {threshold: 4}}}"])
    assert yaml.safe_load(commented) == shown  # the comments do not change the YAML


def test_config_show_lists_the_outputs_clip_and_auth_settings(capsys):
    """What an operator sets up for issue 18, each with its description; a webhook's key is
    named by its environment variable, never shown."""
    assert main(["config", "show", "--set", "outputs.targets=[{kind: kafka, topic: alerts}, "
                 "{kind: webhook, url: 'https://soc.example.org/vad'}]"]) == 0
    shown = capsys.readouterr().out
    plain = yaml.safe_load(shown)
    assert plain["outputs"]["targets"][1]["secret_env"] == "VAD_WEBHOOK_SECRET"
    assert set(plain["outputs"]) >= {"targets", "dashboard_url", "queue_dir", "queue_max_mb",
                                     "retry_initial_s", "retry_max_s"}
    assert set(plain["clips"]) >= {"enabled", "pre_roll_s", "max_seconds", "max_mb",
                                   "max_width", "crf"}
    assert set(plain["store"]["retention"]) == {"max_age_days", "max_mb"}
    assert set(plain["dashboard"]["auth"]) >= {"users", "oidc", "disabled"}
    for description in ("seconds before the event that the clip starts with",
                        "total size of the clips kept", "folder of the per-target delivery queues",
                        "# Who may use the dashboard."):
        assert description in shown, description


def test_camera_sections_are_merged_over_the_global_ones():
    config = load_config(None, [
        "events.min_duration=7", "scorers=[{name: frame-diff, weight: 2}]",
        "cameras={gate: {events: {threshold: 4.5}}, "
        "lobby: {scorers: [{name: motion, checkpoint: ckpt}], source: rtsp://cam/1}}"])
    gate, lobby, other = config.camera("gate"), config.camera("lobby"), config.camera("x")
    assert (gate.events.threshold, gate.events.min_duration) == (4.5, 7)  # merged key by key
    assert gate.scorers[0].weight == 2  # inherited
    assert [s.name for s in lobby.scorers] == ["motion"]  # a list replaces
    assert lobby.events.min_duration == 7 and config.cameras["lobby"].source == "rtsp://cam/1"
    assert other.events == config.events and other.scorers == config.scorers
    with pytest.raises(VadError, match=r"cameras.bad id!.\[key\]: String should match pattern"):
        load_config(None, ["cameras={'bad id!': {}}"])


def test_overrides_index_lists_and_keep_the_other_defaults():
    config = load_config(None, ["scorers.0.params.size=[32,48]", "store=redis://h:6379/0",
                                "store.redis.prefix=site1"])
    assert config.scorers[0].name == "frame-diff" and config.scorers[0].params.size == (32, 48)
    assert (config.store.url, config.store.redis.prefix) == ("redis://h:6379/0", "site1")
    with pytest.raises(VadError, match="'3' is not an index of a list of 1"):
        load_config(None, ["scorers.3.weight=2"])


def test_every_field_has_a_description():
    from pydantic import BaseModel

    missing = []

    def walk(model, where):
        for name, info in type(model).model_fields.items():
            value = getattr(model, name)
            section = isinstance(value, BaseModel)
            if not (info.description or (section and type(value).__doc__)):
                missing.append(f"{where}{name}")
            if section:
                walk(value, f"{where}{name}.")
            for item in value if isinstance(value, list) else []:
                if isinstance(item, BaseModel):
                    walk(item, f"{where}{name}[].")

    walk(load_config(None, ["reasoning.llm=openai:http://h/v1"]), "")
    assert not missing, missing


def test_the_commented_yaml_of_the_default_config():
    text = config_yaml(VadConfig())
    assert yaml.safe_load(text) == VadConfig().model_dump(mode="json")
