"""gan.anonymize.video on a synthetic clip with known faces (data.demo.clip): the container, frames, rate and size are
kept, tracked faces never slip, bad videos are recorded."""

import json
import shutil

import av
import numpy as np
import pytest

from data.demo.clip import make_clip
from data.detections import parse_face
from gan.anonymize import Anonymizer, main
from gan.anonymize.video import FaceTracker, VideoReport

FRAMES = 20


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    (folder / "in").mkdir()
    detections = make_clip(folder / "in" / "clip.mp4", frames=FRAMES, fps=10, canvas=(320, 224), scale=0.4)
    (folder / "det.json").write_text(json.dumps({"clip.mp4": detections}))
    return folder, detections


def frames_of(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        return frames, stream.average_rate, stream.codec_context.format.name, container.streams.audio


def test_a_video_keeps_its_format_and_every_face_is_replaced(clip, random_export, tmp_path):
    folder, detections = clip
    out = tmp_path / "out"
    assert main(["--model", str(random_export), "--input", str(folder / "in"), "--output", str(out),
                 "--detections", str(folder / "det.json"), "--seed", "3"]) == 0
    before, rate, pix, _ = frames_of(folder / "in" / "clip.mp4")
    after, out_rate, out_pix, audio = frames_of(out / "clip.mp4")
    assert len(after) == len(before) == FRAMES and out_rate == rate and out_pix == pix and not audio
    assert after[0].shape == before[0].shape
    for frame, result, faces in zip(before, after, detections, strict=True):
        x0, y0, x1, y1 = (int(v) for v in faces[0]["box"])
        inside = np.abs(frame[y0:y1, x0:x1].astype(int) - result[y0:y1, x0:x1]).mean()
        outside = np.abs(frame[:, : max(x0 - 4, 1)].astype(int) - result[:, : max(x0 - 4, 1)]).mean()
        assert inside > 10 * max(outside, 0.5)  # the face replaced; elsewhere only H.264 at crf 18 moves pixels
    report = json.loads((out / "report.json").read_text())["videos"]["clip.mp4"]
    assert report["frames"] == FRAMES and report["tracks"] == 1 and report["faces_detected"] == FRAMES
    assert report["generated"] == FRAMES and report["audio"] == "dropped"


def test_without_detections_the_detector_runs_on_every_frame(clip, random_export, tmp_path, monkeypatch):
    """The face-alignment path (its weights are not here offline): a stand-in with its interface, one call per
    decoded frame, returns the clip's known face; the result is the one the same faces from a file give."""
    import gan.anonymize.cli as cli

    folder, detections = clip
    calls = []

    class Known:
        def __init__(self, device, batch_size):
            self.device = device

        def __call__(self, photo):
            calls.append(photo.shape)
            return [parse_face(face, "clip") for face in detections[len(calls) - 1]]

    monkeypatch.setattr(cli, "FaceAlignmentDetector", Known)
    args = ["--model", str(random_export), "--input", str(folder / "in" / "clip.mp4"), "--seed", "3"]
    assert main([*args, "--output", str(tmp_path / "detected")]) == 0
    assert calls == [(224, 320, 3)] * FRAMES
    assert main([*args, "--output", str(tmp_path / "listed"), "--detections", str(folder / "det.json")]) == 0
    detected, _, _, _ = frames_of(tmp_path / "detected" / "clip.mp4")
    listed, _, _, _ = frames_of(tmp_path / "listed" / "clip.mp4")
    assert all(np.array_equal(a, b) for a, b in zip(detected, listed, strict=True))


def test_a_tracked_face_missed_by_the_detector_is_still_anonymised(clip, random_export):
    """The detector misses the face in 3 frames in a row: its track's predicted box covers the true face there."""
    _, detections = clip
    truth = [[parse_face(f, "clip") for f in faces] for faces in detections]
    tracker, report = FaceTracker(max_gap=4), VideoReport()
    ids = set()
    for index, faces in enumerate(truth):
        planned = tracker.update([] if 8 <= index < 11 else faces, report)
        assert len(planned) == 1, index  # never a frame without the face
        box, _, track = planned[0]
        ids.add(track)
        true = faces[0].box
        assert box[0] <= true[0] and box[1] <= true[1] and box[2] >= true[2] and box[3] >= true[3], index
    assert ids == {1} and report.faces_filled_by_tracking == 3 and report.tracks == 1  # one identity throughout
    for _ in range(5):  # beyond --max-gap the track ends
        planned = tracker.update([], report)
    assert planned == []


def test_a_damaged_or_mismatched_video_is_recorded(clip, random_export, tmp_path):
    folder, detections = clip
    bad = tmp_path / "in"
    bad.mkdir()
    data = (folder / "in" / "clip.mp4").read_bytes()
    (bad / "cut.mp4").write_bytes(data[: len(data) // 3])  # truncated
    (bad / "short.mp4").write_bytes(data)
    (bad / "empty.mkv").write_bytes(b"")
    det = {"cut.mp4": detections, "short.mp4": detections[:5], "empty.mkv": []}
    (tmp_path / "det.json").write_text(json.dumps(det))
    out = tmp_path / "out"
    assert main(["--model", str(random_export), "--input", str(bad), "--output", str(out),
                 "--detections", str(tmp_path / "det.json")]) == 1
    reasons = {f["path"]: f["reason"] for f in json.loads((out / "report.json").read_text())["failed"]}
    assert "the detections file lists 5 frames" in reasons["short.mp4"]
    assert "cannot open the video" in reasons["empty.mkv"]
    # A cut MP4 has lost its index (written at the end): it cannot be opened; a cut stream fails while decoding.
    assert "cannot open the video" in reasons["cut.mp4"] or "decoding failed" in reasons["cut.mp4"]
    assert not list(out.glob(".*partial*"))  # nothing half-written is left


def with_audio(source, target):
    """``source`` with a second of silent AAC audio muxed in."""
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        video = out.add_stream_from_template(inp.streams.video[0])
        audio = out.add_stream("aac", rate=16000)
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = video
                out.mux(packet)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in [*audio.encode(frame), *audio.encode()]:
            out.mux(packet)


def test_audio_is_dropped_unless_asked_for(clip, random_export, tmp_path):
    folder, _ = clip
    (tmp_path / "in").mkdir()
    with_audio(folder / "in" / "clip.mp4", tmp_path / "in" / "clip.mp4")
    assert frames_of(tmp_path / "in" / "clip.mp4")[3]
    shutil.copy(folder / "det.json", tmp_path / "det.json")
    for flag, kept in (([], False), (["--keep-audio"], True)):
        out = tmp_path / f"out{len(flag)}"
        assert main(["--model", str(random_export), "--input", str(tmp_path / "in"), "--output", str(out),
                     "--detections", str(tmp_path / "det.json"), *flag]) == 0
        frames, _, _, audio = frames_of(out / "clip.mp4")
        assert len(frames) == FRAMES and bool(audio) == kept


def test_faces_in_a_frame_get_their_track_latent(random_export):
    """Two frames, the same track id: the same latent, whatever else is in the batch."""
    anonymizer = Anonymizer.from_export(random_export, seed=2)
    frame = np.full((96, 96, 3), 120, np.uint8)
    box, points = np.array([[20.0, 20.0, 60.0, 60.0]]), np.full((1, 7, 2), -1.0)
    a, b = anonymizer.many([frame, frame], [box, box], [points, points], [0, 0], face_ids=[[5], [5]])
    c, = anonymizer.many([frame], [box], [points], [0], face_ids=[[6]])
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[0], c[0])
