"""VANE-Bench: both data forms, the official scoring, the answerers (a local
OpenAI-compatible server, a tiny random Hugging Face model, the pipeline on a Ped2 clip),
the runner's cache, timeouts and retries, the report and the question builder."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO, moving_square, write_video
from vad.cli import main
from vad.config.vane import BuildConfig, VaneConfig
from vad.errors import VadError
from vad.vane.attributes import FASTER, SAME, SLOWER, STILL, agreement, read_attributes
from vad.vane.builder import Annotations, load_annotations, plan, qa_text
from vad.vane.questions import read_questions, split_options
from vad.vane.scoring import is_correct, map_to_letter, official_letter, official_line, score_line

QUESTION = ("What is unusual in this video? A) A person walking B) A person riding a bicycle "
            "C) A car parked D) Nothing at all")
ANNOTATIONS = REPO / "datasets" / "vane" / "ped2.yaml"


def _frames(folder: Path, numbers: list[int], shade: int = 0) -> None:
    folder.mkdir(parents=True)
    for n in numbers:
        image = np.full((24, 32, 3), (n * 7 + shade) % 255, np.uint8)
        cv2.imwrite(str(folder / f"frame_{n}.jpg"), image)


def vane_folder(root: Path) -> Path:
    """Two subsets: Ped2 with `_qa.txt` beside the clip folder, SORA with it inside."""
    ped2 = root / "VQA_Data" / "Real World" / "UCSD-Ped2"
    _frames(ped2 / "video_1_subset_1", [2, 10, 11, 12, 13, 14, 15, 16, 17, 100])
    (ped2 / "video_1_subset_1_qa.txt").write_text(repr([
        {"Q": QUESTION, "A": "B", "type": "what"},
        {"Q": "Which way does it go? A) Left B) Right C) Up D) Down", "A": "C)"}]))
    sora = root / "VQA_Data" / "AI-Generated" / "SORA"
    _frames(sora / "video_7_subset_2", list(range(10)), shade=3)
    (sora / "video_7_subset_2" / "video_7_subset_2_qa.txt").write_text(
        '[{"Q": "What appears suddenly? A) A cat B) A dog C) A bird D) A tree", "A": "D"}]')
    return root / "VQA_Data"


def vane_parquet(path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for clip, question, answer in [("video_1_subset_1", QUESTION, "B"),
                                   ("video_1_subset_1", "Which way? A) Left B) Right", "A"),
                                   ("video_2_subset_1", "What? A) x B) y C) z D) w", "D")]:
        row = {f"frame_{i}": {"bytes": cv2.imencode(".png", np.full((8, 8, 3), i, np.uint8))[1]
                              .tobytes(), "path": None} for i in range(10)}
        rows.append({**row, "category": "Real World", "sub_category": "UCSD-Ped2",
                     "video_folder": clip, "question": question, "answer": answer})
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# ---------------------------------------------------------------- data forms

def test_folder_form_reads_both_layouts_in_frame_order(tmp_path):
    questions = read_questions(vane_folder(tmp_path))
    assert [(q.subset, q.category, q.clip, q.number, q.answer, q.kind) for q in questions] == [
        ("SORA", "AI-Generated", "video_7_subset_2", 0, "D", None),
        ("UCSD-Ped2", "Real World", "video_1_subset_1", 0, "B", "what"),
        ("UCSD-Ped2", "Real World", "video_1_subset_1", 1, "C)", None)]
    ped2 = questions[1]
    assert [f.index for f in ped2.frames] == [2, 10, 11, 12, 13, 14, 15, 16, 17, 100]
    assert ped2.frames[0].image().shape == (24, 32, 3)
    assert ped2.options()["B"] == "A person riding a bicycle"
    only = read_questions(tmp_path, ["ucsd_ped2"])
    assert {q.subset for q in only} == {"UCSD-Ped2"}
    with pytest.raises(VadError, match=r"--subset Avenue: not in .* \(it has SORA, UCSD-Ped2\)"):
        read_questions(tmp_path, ["Avenue"])


def test_parquet_form_reads_one_question_per_row(tmp_path):
    questions = read_questions(vane_parquet(tmp_path / "vane.parquet"))
    assert [(q.subset, q.clip, q.number, q.answer) for q in questions] == [
        ("UCSD-Ped2", "video_1_subset_1", 0, "B"), ("UCSD-Ped2", "video_1_subset_1", 1, "A"),
        ("UCSD-Ped2", "video_2_subset_1", 0, "D")]
    first = questions[0]
    assert first.text == QUESTION and first.category == "Real World"
    assert [f.index for f in first.frames] == list(range(10))
    assert first.frames[3].image()[0, 0].tolist() == [3, 3, 3]
    assert first.frames[3].jpeg()[:2] == b"\xff\xd8"  # PNG cells are sent as JPEG
    assert read_questions(tmp_path)[2].clip == "video_2_subset_1"  # a folder of shards


def test_qa_files_are_literals_never_executed(tmp_path):
    root = vane_folder(tmp_path)
    marker = tmp_path / "executed"
    qa = root / "Real World" / "UCSD-Ped2" / "video_1_subset_1_qa.txt"
    qa.write_text(f"[{{'Q': __import__('os').system('touch {marker}'), 'A': 'B'}}]")
    with pytest.raises(VadError, match="video_1_subset_1_qa.txt: not a Python literal list"):
        read_questions(root)
    assert not marker.exists()
    qa.write_text("[{'Q': 'no answer'}]")
    with pytest.raises(VadError, match="entry 0 needs string 'Q' and 'A' fields"):
        read_questions(root)
    with pytest.raises(VadError, match="neither VANE-Bench form"):
        read_questions(root / "Real World" / "UCSD-Ped2" / "video_1_subset_1")


def test_options_are_split_in_letter_order():
    stem, options = split_options("Is (A) right? A) yes, B) no C) maybe D) D) twice")
    assert stem == "Is (A) right?"
    assert options == {"A": "yes", "B": "no", "C": "maybe", "D": "D) twice"}
    assert split_options("no options here") == ("no options here", {})


# ---------------------------------------------------------------- scoring

@pytest.mark.parametrize("prediction, correct", [
    ("B", True), ("B)", True), ("b", False), ("B.", False), ("BC", False), ("", False),
    ("B \n", True), (" B", False), ("C", False)])
def test_official_scoring_of_hand_made_predictions(prediction, correct):
    assert is_correct("B", prediction) is correct
    assert is_correct("B)", prediction) is correct  # a ")" on the answer is stripped too
    assert score_line(official_line("B", prediction)) is correct


def test_prediction_lines_stay_one_per_answer_and_readable():
    assert official_line("B)", "") == "B\t<empty>"  # the official script would crash on ""
    assert official_line("A", "A\tB\nC") == "A\tA B C"
    assert official_letter("B)", "ABCD") == "B" and official_letter("b", "ABCD") is None
    assert official_letter("B.", "ABCD") is None and official_letter("E", "ABCD") is None


@pytest.mark.parametrize("reply, letter", [
    ("B", "B"), ("(C) a car", "C"), ("D. nothing", "D"), ("The answer is b.", "B"),
    ("A person riding a bicycle, clearly", "B"), ("I think a person walking", "A"),
    ("no idea", None)])
def test_free_form_replies_map_to_an_option(reply, letter):
    assert map_to_letter(reply, split_options(QUESTION)[1]) == letter


# ---------------------------------------------------------------- openai: + runner + report

def _eval(argv: list[str], capsys) -> tuple[int, list[str]]:
    code = main(["vane", "eval", *argv, "--no-progress", "--set", "vane.backoff_s=0.01"])
    return code, capsys.readouterr().out.strip().splitlines()


def test_openai_answerer_sends_the_papers_request_and_results_are_scored(
        tmp_path, chat_server, capsys):
    url, handler = chat_server
    data, out = vane_folder(tmp_path / "data"), tmp_path / "out"
    handler.script = [(200, "D", 0), (200, "B)", 0), (200, "c", 0)]
    code, lines = _eval([str(data), "--answerer", f"openai:{url}#tiny", "--out", str(out)],
                        capsys)
    assert code == 0 and lines[-1] == "accuracy=66.67"
    request = handler.requests[1]  # the Ped2 clip's first question
    assert request["model"] == "tiny" and request["temperature"] == 0
    assert request["max_tokens"] == 2 and request["seed"] == 8
    system, user = request["messages"]
    assert system["role"] == "system" and "single letter" in system["content"]
    assert user["content"][0] == {"type": "text", "text": QUESTION}
    images = user["content"][1:]
    assert len(images) == 10
    first = images[0]["image_url"]["url"]
    assert first.startswith("data:image/jpeg;base64,")
    sent = base64.b64decode(first.split(",", 1)[1])
    stored = tmp_path / "data/VQA_Data/Real World/UCSD-Ped2/video_1_subset_1/frame_2.jpg"
    assert sent == stored.read_bytes()  # the frames as they are stored, in frame order
    preds = out / "predictions"
    assert (preds / "UCSD-Ped2" / "video_1_subset_1_preds.txt").read_text() == "B\tB)\nC\tc\n"
    assert (preds / "SORA" / "video_7_subset_2_preds.txt").read_text() == "D\tD\n"
    report = json.loads((out / "report.json").read_text())
    ped2 = report["subsets"]["UCSD-Ped2"]
    assert (ped2["questions"], ped2["correct"], ped2["malformed"]) == (2, 1, 1)
    assert ped2["category"] == "Real World" and ped2["published"]["Gemini-1.5 Pro"] == 94.44
    assert ped2["question_types"]["what"]["accuracy"] == 100.0
    assert report["categories"]["AI-Generated"]["accuracy"] == 100.0
    assert report["malformed"] == [{"id": "UCSD-Ped2/video_1_subset_1#1", "reply": "c"}]
    chart = cv2.imread(str(out / "accuracy.png"))
    assert chart is not None and chart.shape[1] > 600
    # A rerun answers from the cache: no request, same figures.
    code, lines = _eval([str(data), "--answerer", f"openai:{url}#tiny", "--out", str(out)],
                        capsys)
    assert code == 0 and lines[-1] == "accuracy=66.67" and len(handler.requests) == 3


def test_timeouts_and_server_errors_are_retried_and_failures_listed(
        tmp_path, chat_server, capsys):
    url, handler = chat_server
    data, out = vane_folder(tmp_path / "data"), tmp_path / "out"
    # SORA: 503 then a timeout then "D"; Ped2 q0: three 500s (failed); Ped2 q1: "C".
    handler.script = [(503, "", 0), (200, "A", 2.0), (200, "D", 0),
                      (500, "", 0), (500, "", 0), (500, "", 0), (200, "C", 0)]
    code, lines = _eval([str(data), "--answerer", f"openai:{url}#tiny", "--out", str(out),
                         "--timeout", "0.5", "--retries", "2"], capsys)
    assert code == 0 and lines[-1] == "accuracy=66.67"
    report = json.loads((out / "report.json").read_text())
    assert [f["id"] for f in report["failed"]] == ["UCSD-Ped2/video_1_subset_1#0"]
    assert "HTTP 500" in report["failed"][0]["error"]
    assert report["overall"]["failed"] == 1
    lines_written = (out / "predictions/UCSD-Ped2/video_1_subset_1_preds.txt").read_text()
    assert lines_written == "B\t<empty>\nC\tC\n"
    # The failed question was not cached: the rerun asks it (only it) again.
    handler.script = [(200, "B", 0)]
    asked = len(handler.requests)
    code, lines = _eval([str(data), "--answerer", f"openai:{url}#tiny", "--out", str(out)],
                        capsys)
    assert lines[-1] == "accuracy=100.00" and len(handler.requests) == asked + 1


def test_a_run_that_keeps_failing_stops_with_one_line(tmp_path, chat_server, capsys):
    url, _ = chat_server  # an empty script: every request gets HTTP 500
    code = main(["vane", "eval", str(vane_folder(tmp_path)), "--answerer", f"openai:{url}#x",
                 "--out", str(tmp_path / "out"), "--retries", "0", "--no-progress",
                 "--set", "vane.max_consecutive_failures=2"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "2 questions in a row failed" in err and "rerun to resume" in err


def test_free_form_answers_are_mapped_and_reported_separately(tmp_path, chat_server, capsys):
    url, handler = chat_server
    handler.script = [(200, "A tree appears.", 0), (200, "It is a person riding a bicycle.", 0),
                      (200, "Answer: C", 0)]
    out = tmp_path / "out"
    code, lines = _eval([str(vane_folder(tmp_path / "d")), "--answerer", f"openai:{url}#m",
                         "--out", str(out), "--free-form"], capsys)
    assert code == 0 and lines[-1] == "accuracy=0.00"
    assert handler.requests[0]["max_tokens"] == VaneConfig().free_form_max_tokens
    assert "one short sentence" in handler.requests[0]["messages"][0]["content"]
    overall = json.loads((out / "report.json").read_text())["overall"]
    assert (overall["correct"], overall["mapped_correct"], overall["malformed"]) == (0, 3, 3)


def test_bad_eval_inputs_are_one_line_errors(tmp_path, capsys):
    data = vane_folder(tmp_path)
    for argv, message in [
        (["nowhere", "--answerer", "openai:http://x/v1"], "nowhere: no such file or folder"),
        ([str(data), "--answerer", "gpt4"], "expected KIND:TARGET"),
        ([str(data), "--answerer", "magic:x"], "unknown answerer 'magic'"),
        ([str(data), "--answerer", "openai:ftp://x"], "must start with http"),
        ([str(data), "--answerer", "hf:/nonexistent/model"], "cannot load an image-text-to-text")]:
        assert main(["vane", "eval", *argv, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (argv, err)


# ---------------------------------------------------------------- hf:

def _tiny_llava(directory: Path) -> Path:
    """A tiny random LLaVA (CLIP vision tower + Llama) that takes several images."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor,
                              PreTrainedTokenizerFast)

    words = ["<unk>", "<s>", "</s>", "<image>", "user", "assistant", ":", "A", "B", "C", "D",
             "What", "is", "unusual", "?"]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>",
                                        bos_token="<s>", eos_token="</s>", pad_token="<unk>")
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    template = ("{% for m in messages %}{{ m['role'] }} : {% for c in m['content'] %}"
                "{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }} {% endif %}"
                "{% endfor %}{% endfor %}{% if add_generation_prompt %}assistant : {% endif %}")
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 16},
                                           crop_size={"height": 16, "width": 16}),
        tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
        chat_template=template, image_token="<image>", num_additional_image_tokens=1)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32,
                                       num_hidden_layers=1, num_attention_heads=2,
                                       image_size=16, patch_size=8),
        text_config=LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32,
                                num_hidden_layers=1, num_attention_heads=2,
                                num_key_value_heads=2, max_position_embeddings=512,
                                bos_token_id=1, eos_token_id=2, pad_token_id=0),
        image_token_index=3, vision_feature_select_strategy="default")
    LlavaForConditionalGeneration(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def test_hf_answerer_with_a_tiny_random_model(tmp_path, capsys):
    from vad.vane.answerers import build_answerer

    model = _tiny_llava(tmp_path / "llava")
    question = read_questions(vane_folder(tmp_path / "d"), ["UCSD-Ped2"])[0]
    answerer = build_answerer(f"hf:{model}", VaneConfig())
    inputs = []
    original = answerer.model.generate

    def spy(**kwargs):
        inputs.append(kwargs)
        return original(**kwargs)

    answerer.model.generate = spy
    reply = answerer.answer(question, question.frames).text
    assert len(inputs[0]["pixel_values"]) == 10 and inputs[0]["max_new_tokens"] == 2
    assert set(reply.split()) <= {"A", "B", "C", "D", "What", "is", "unusual", "?", ":",
                                  "user", "assistant"}
    code, lines = _eval([str(tmp_path / "d"), "--answerer", f"hf:{model}", "--out",
                         str(tmp_path / "out"), "--subset", "SORA"], capsys)
    assert code == 0 and lines[-1].startswith("accuracy=")


# ---------------------------------------------------------------- vad: pieces

@pytest.mark.parametrize("text, direction, x, y, pace", [
    ("From left to right", (1, 0), None, None, None),
    ("from the right side of the walkway to the left side", (-1, 0), None, None, None),
    ("Towards the camera", (0, 1), None, None, None),
    ("It rides away from the camera", (0, -1), None, None, None),
    ("moving toward the bottom of the frame", (0, 1), None, None, None),
    ("it moves down and to the right across the view", (0.7071, 0.7071), None, None, None),
    ("On the left side of the walkway", None, 1 / 6, None, None),
    ("in the upper-right corner", None, 5 / 6, 1 / 6, None),
    ("in the middle-left of the view", None, 1 / 6, 0.5, None),
    ("In the centre", None, 0.5, 0.5, None),
    ("Much faster than the pedestrians", None, None, None, FASTER),
    ("At the same pace as the people walking", None, None, None, SAME),
    ("Slowly, slower than everyone", None, None, None, SLOWER),
    ("It is parked and does not move", None, None, None, STILL),
    ("Neither faster nor slower", None, None, None, None),
    ("A person riding a bicycle", None, None, None, None)])
def test_direction_place_and_pace_are_read_from_plain_words(text, direction, x, y, pace):
    said = read_attributes(text)
    assert said.direction == pytest.approx(direction, abs=1e-3) if direction else \
        said.direction is None
    assert (said.x, said.y, said.pace) == (pytest.approx(x) if x else None,
                                           pytest.approx(y) if y else None, pace)


def test_agreement_compares_what_an_option_says_with_the_evidence():
    moving_right_fast_left_side = dict(direction=(1.0, 0.0), region=(0.2, 0.5), pace=FASTER)
    assert agreement(read_attributes("from left to right"), **moving_right_fast_left_side) == 1
    assert agreement(read_attributes("from right to left"), **moving_right_fast_left_side) == -1
    assert agreement(read_attributes("on the right side"),
                     **moving_right_fast_left_side) == pytest.approx(-0.9)
    assert agreement(read_attributes("at the same pace as the people"),
                     **moving_right_fast_left_side) == 0
    assert agreement(read_attributes("slower than the people"),
                     **moving_right_fast_left_side) == -1
    assert agreement(read_attributes("a bicycle"), **moving_right_fast_left_side) is None


def test_embed_selection_prefers_the_anomaly_over_what_is_normal():
    from vad.config.vane import PipelineAnswererConfig
    from vad.vane.evidence import ClipEvidence
    from vad.vane.questions import Question
    from vad.vane.selection import EmbedSelector

    evidence = ClipEvidence(
        ("a person with a bicycle",
         "a person with a bicycle moving faster than the people walking in the centre"),
        ("a person walking",), (-1.0, 0.0), (0.5, 0.5), FASTER, "")
    selector = EmbedSelector(PipelineAnswererConfig())

    def ask(text: str) -> str:
        return selector.choose(Question("s", "c", "clip", 0, text, "", ()), evidence)[0]

    assert ask(QUESTION) == "B"
    assert ask("Which way? A) From left to right B) Towards the camera "
               "C) From right to left D) Away from the camera") == "C"
    assert ask("How fast? A) Same pace as the people walking B) Standing still "
               "C) Slower than the pedestrians D) Much faster than the pedestrians") == "D"


def test_llm_selection_reads_the_evidence_and_replies_a_letter(chat_server):
    from reasoning.llm import build_llm
    from vad.vane.evidence import ClipEvidence
    from vad.vane.questions import Question
    from vad.vane.selection import LLMSelector

    url, handler = chat_server
    handler.script = [(200, "Answer: B) a person riding a bicycle", 0), (200, "hmm", 0)]
    selector = LLMSelector(build_llm(f"openai:{url}#m"), 8)
    evidence = ClipEvidence(("a person with a bicycle",), (), None, None, None,
                            "The scorers point at a person with a bicycle.")
    question = Question("s", "c", "clip", 0, QUESTION, "B", ())
    assert selector.choose(question, evidence)[0] == "B"
    prompt = handler.requests[0]["messages"][0]["content"]
    assert "The scorers point at a person with a bicycle." in prompt and QUESTION in prompt
    assert selector.choose(question, evidence)[0] == "hmm"  # kept as said: malformed


def test_tracks_follow_a_fast_object_through_a_crowd():
    from reasoning.yolox import Detection
    from vad.vane.evidence import track, track_speed

    rng = np.random.default_rng(0)
    looks = {name: rng.integers(0, 255, (30, 12), dtype=np.uint8) for name in "abc"}
    images, detections = [], []
    for t in range(6):
        image = np.zeros((120, 240), np.uint8)
        # a and b walk right 4 px per frame; c runs left 30 px per frame between them
        places = {"a": 40 + 4 * t, "b": 110 + 4 * t, "c": 200 - 30 * t}
        found = []
        for name, x in places.items():
            image[40:70, x:x + 12] = looks[name]
            found.append(Detection((x, 40, x + 12, 70), 0.9, "person"))
        images.append(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
        detections.append(found)
    tracks = track(images, detections, reach=3.0)
    assert len(tracks) == 3 and all(len(t.sightings) == 6 for t in tracks)
    speeds = sorted(track_speed(t, [1.0] * 5) for t in tracks)
    assert speeds == pytest.approx([4 / 30, 4 / 30, 1.0])



def test_flow_prediction_keeps_two_crossing_objects_apart():
    """Seen once, a track's velocity is unknown, so carried on it stays put and two objects
    that swap places between frames swap tracks; the flow in their boxes says who went where."""
    from reasoning.yolox import Detection
    from vad.vane.evidence import track

    images = [np.zeros((100, 240, 3), np.uint8) for _ in range(2)]
    detections = [[Detection((x - 6, 30, x + 6, 60), 0.9, "person") for x in xs]
                  for xs in ([100, 130], [125, 105])]
    flow = np.zeros((100, 240, 2), np.float32)
    flow[30:60, 94:106, 0], flow[30:60, 124:136, 0] = 25.0, -25.0
    paths = {tuple(det.center[0] for _, det in t.sightings)
             for t in track(images, detections, reach=3.0, appearance_weight=0.0)}
    assert paths == {(100, 105), (130, 125)}  # swapped
    paths = {tuple(det.center[0] for _, det in t.sightings)
             for t in track(images, detections, reach=3.0, appearance_weight=0.0,
                            flows=[flow])}
    assert paths == {(100, 125), (130, 105)}

# ---------------------------------------------------------------- vane build

def _annotations(**videos) -> Annotations:
    return Annotations.model_validate({
        "subset": "Toy", "stems": {"what": "What is odd?", "pace": "How fast is the {subject}?"},
        "vocabulary": {"what": ["a bicycle", "a car", "a cart", "a dog", "a skateboard"],
                       "pace": ["faster", "slower", "same pace", "still"]},
        "videos": videos or {f"{v:02d}": [{"frames": [3, 8], "subject": "thing",
                                          "questions": {"what": "a bicycle", "pace": "faster"},
                                          "also_true": {"what": ["a skateboard"]}}]
                             for v in range(1, 7)}})


def test_plan_balances_letters_and_never_offers_a_true_option():
    clips = plan(_annotations(), seed=0)
    letters = [q.answer for c in clips for q in c.questions]
    assert sorted(letters) == sorted("ABCD" * 3)
    for clip in clips:
        what, pace = clip.questions
        options = split_options(what.text)[1]
        assert options[what.answer] == "a bicycle" and "a skateboard" not in options.values()
        assert split_options(pace.text)[0] == "How fast is the thing?"
        assert split_options(pace.text)[1][pace.answer] == "faster"
    assert clips[0].name == "video_1_subset_1" and clips[0].frames == (2, 7)
    assert qa_text(clips[0]) == qa_text(plan(_annotations(), seed=0)[0])  # reproducible


def test_annotations_are_checked_at_load_time(tmp_path):
    bad = tmp_path / "a.yaml"
    bad.write_text("subset: Toy\nstems: {what: '?'}\nvocabulary: {what: [a, b]}\n"
                   "videos: {'01': [{frames: [3, 8], subject: s, questions: {what: a}}]}\n")
    with pytest.raises(VadError, match="aspect 'what' has 1 possible distractors"):
        load_annotations(bad)
    bad.write_text("subset: Toy\nstems: {}\nvocabulary: {}\n"
                   "videos: {'01': [{frames: [8, 3], subject: s, questions: {what: a}}]}\n")
    with pytest.raises(VadError, match=r"frames \[8, 3\]: expected \[first, last\]"):
        load_annotations(bad)


def test_build_writes_clips_that_read_back(tmp_path, capsys):


    dataset = tmp_path / "toy"
    (dataset / "test").mkdir(parents=True)
    write_video(dataset / "test" / "01.mp4", moving_square(n=20))
    (dataset / "test_labels.csv").write_text(
        "video,frame,label\n" + "".join(f"01,{i},{int(i >= 5)}\n" for i in range(20)))
    annotations = tmp_path / "toy.yaml"
    annotations.write_text(
        "subset: Toy\nstems: {what: 'What moves?', direction: 'Where does the {subject} go?'}\n"
        "vocabulary: {what: [a square, a circle, a star, a line],\n"
        "             direction: [from left to right, from right to left, upwards, downwards]}\n"
        "videos:\n  '01':\n    - frames: [6, 20]\n      subject: square\n"
        "      questions: {what: a square, direction: from left to right}\n")
    assert main(["vane", "build", str(dataset), "--annotations", str(annotations),
                 "--out", str(tmp_path / "set")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "1 clips, 2 questions"
    questions = read_questions(tmp_path / "set")
    assert [f.index for f in questions[0].frames] == [5, 7, 8, 10, 11, 13, 14, 16, 17, 19]
    assert questions[0].subset == "Toy" and questions[0].category == "Real World"
    first, last = questions[0].frames[0].image(), questions[0].frames[-1].image()
    assert first.shape == (64, 96, 3)
    bright = [np.argwhere(img[..., 0] > 150)[:, 1].mean() for img in (first, last)]
    assert bright[1] - bright[0] > 30  # the square moved right between the first and last
    assert [q.options()[q.answer] for q in questions] == ["a square", "from left to right"]


def test_committed_ped2_questions_are_what_the_annotations_build():
    annotations = load_annotations(ANNOTATIONS)
    folder = ANNOTATIONS.parent / "VQA_Data" / annotations.category / annotations.subset
    clips = plan(annotations, BuildConfig().seed)
    assert len(clips) == 12 and sum(len(c.questions) for c in clips) == 36
    letters = [q.answer for c in clips for q in c.questions]
    assert sorted(letters) == sorted("ABCD" * 9)
    for clip in clips:
        assert (folder / f"{clip.name}_qa.txt").read_text() == qa_text(clip), clip.name


# ---------------------------------------------------------------- vad: end to end

@pytest.mark.slow
def test_vad_answerer_on_one_ped2_clip(ped2_dir, tmp_path, capsys):
    from reasoning.yolox import DEFAULT_MODEL

    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"YOLOX-nano not found at {DEFAULT_MODEL}")
    import yaml

    annotations = yaml.safe_load(ANNOTATIONS.read_text())
    annotations["videos"] = {"04": annotations["videos"]["04"]}
    one = tmp_path / "one.yaml"
    one.write_text(yaml.safe_dump(annotations))
    assert main(["vane", "build", str(ped2_dir), "--annotations", str(one),
                 "--out", str(tmp_path / "set")]) == 0
    capsys.readouterr()
    code, lines = _eval([str(tmp_path / "set"), "--answerer",
                         f"vad:{REPO / 'configs' / 'demo.yaml'}", "--out",
                         str(tmp_path / "out")], capsys)
    assert code == 0 and lines[-1].startswith("accuracy=")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["overall"]["questions"] == 3 and report["overall"]["malformed"] == 0
    for answer in report["answers"]:
        assert answer["reply"] in "ABCD" and "The scorers point at" in answer["evidence"]
    preds = (tmp_path / "out/predictions/UCSD-Ped2/video_4_subset_1_preds.txt").read_text()
    assert len(preds.splitlines()) == 3
