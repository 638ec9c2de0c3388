"""Anonymise a video: frames streamed through PyAV, faces tracked across frames with norfair, each track generated
with one latent, and no face left in the clear when the detector misses it for a few frames.

- **Decoding and encoding** (PyAV): a reader thread decodes into a bounded queue (constant memory whatever the
  length); the output has the input's container, frame count, frame rate, time stamps (so its duration) and
  resolution, in H.264 (``--crf``, 18 by default: visually lossless) with the input's pixel format where H.264
  takes it (yuv420p, yuv422p, yuv444p; otherwise yuv420p). Audio is dropped unless ``--keep-audio`` (voices
  identify people too); container metadata is never copied.
- **Tracking** (norfair): each face is tracked by its box corners and its 7 keypoints (an absent keypoint has score 0
  and does not update its filter); matching is by box IoU. A track keeps one latent, seeded by ``--seed``, the file
  and the track id, so a face does not change identity frame to frame; its box and keypoints are the Kalman
  filter's estimate, so it does not jitter. norfair is used because its public ``Tracker.update`` returns a
  track's predicted position in frames where the detector missed it, which the next point needs, and because it
  needs no OpenCV (supervision's and ``trackers``' ByteTrack need opencv-python and return only matched tracks).
- **No slip**: a tracked face that the detector misses is still anonymised for up to ``--max-gap`` frames, at its
  predicted box grown per missed frame by ``GAP_MARGIN`` of its side plus its estimated speed (a prediction
  lags a face that turns or speeds up). In a detected frame the face is anonymised over a box centred on the
  detection, sized by the filter and grown by ``MATCH_MARGIN``, widened where the detection sticks out (no
  detected pixel is left out); a detection that no track claims is anonymised on its own.
  A face that appears mid-video starts a new track.

``report.json`` gets per video: frames, tracks, faces detected, faces filled by tracking (gap frames), faces
generated and blurred.
"""

import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.detections import Face
from data.face_analysis import box_iou
from data.keypoints import NUM_KEYPOINTS, pixel_keypoints_present
from data.record import DataError
from gan.anonymize.anonymizer import Anonymizer
from gan.anonymize.files import commit, temporary

GAP_MARGIN = 0.1  # per missed frame, of the box's side on each side
# norfair's Kalman filter: measurement noise R (larger: smoother, more lag) and process noise Q (its defaults).
KALMAN_R, KALMAN_Q = 4.0, 0.1
MATCH_MARGIN = 0.05  # a detected face: its smoothed box grown by this, then widened to hold the detection
H264_PIXEL_FORMATS = ("yuv420p", "yuv422p", "yuv444p")
QUEUE_FRAMES = 8  # decoded frames waiting for the anonymizer: the memory a video takes, whatever its length
FLUSH_FRAMES = 8  # frames whose faces are generated in one batch (or fewer, once batch_size faces are queued)


def _distance(detection, tracked) -> float:
    """1 - IoU of a detection's box and a track's estimated box (the first two of the 9 tracked points)."""
    return 1.0 - box_iou(detection.points[:2].reshape(4), tracked.estimate[:2].reshape(4))


@dataclass
class VideoReport:
    frames: int = 0
    tracks: int = 0
    faces_detected: int = 0
    faces_filled_by_tracking: int = 0
    faces_untracked: int = 0
    generated: int = 0
    generated_without_keypoints: int = 0
    blurred: int = 0


class FaceTracker:
    """Per frame: the faces to anonymise, ``(box, keypoints, track id)``, from the frame's detections."""

    def __init__(self, max_gap: int, smoothing: float = KALMAN_R) -> None:
        from norfair import Detection, Tracker
        from norfair.filter import OptimizedKalmanFilterFactory

        self.Detection = Detection
        self.max_gap = max_gap
        # norfair's vectorized distances take 2-point boxes only; ours sees 9 points (box and keypoints), so it is a
        # scalar function, which norfair advises against on the root logger: with a few faces per frame it costs
        # microseconds, so the advice is held back while the tracker is built.
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            self.tracker = Tracker(distance_function=_distance, distance_threshold=0.9,
                                   hit_counter_max=max(max_gap, 1), initialization_delay=0,
                                   pointwise_hit_counter_max=max(max_gap, 1), detection_threshold=0.5,
                                   filter_factory=OptimizedKalmanFilterFactory(R=smoothing, Q=KALMAN_Q))
        finally:
            root.setLevel(level)
        self.last_seen: dict[int, int] = {}  # track id -> the last frame it was detected in
        self.frame = -1
        self.next_untracked = 1 << 30  # latent ids of detections no track claims (never a track's id)

    def update(self, faces: list[Face], report: VideoReport) -> list[tuple[np.ndarray, np.ndarray, int]]:
        self.frame += 1
        detections = []
        for face in faces:
            present = pixel_keypoints_present(face.keypoints)
            points = np.concatenate([face.box.reshape(2, 2), np.where(present[:, None], face.keypoints, 0.0)])
            scores = np.concatenate([[1.0, 1.0], present.astype(float)])
            detections.append(self.Detection(points, scores, data=face))
        report.faces_detected += len(faces)
        out, claimed = [], set()
        for obj in self.tracker.update(detections):
            matched = any(obj.last_detection is d for d in detections)
            if matched or obj.id not in self.last_seen:
                self.last_seen[obj.id] = self.frame
            if matched:
                claimed.add(id(obj.last_detection))
            missed = self.frame - self.last_seen[obj.id]
            if missed > self.max_gap:
                continue
            box = obj.estimate[:2].reshape(4).astype(np.float64)
            side = max(box[2] - box[0], box[3] - box[1])
            if matched:
                # Centred on the detection (a face's motion moves its crop by the same pixels), sized by the filter
                # (the scale of the crop does not jitter) and grown a little, so that a detection rarely sticks out;
                # where it does, the box is widened to hold it.
                detected = obj.last_detection.data.box
                centre = (detected[:2] + detected[2:]) / 2
                half = (box[2:] - box[:2]) / 2 + MATCH_MARGIN * side
                box = np.concatenate([np.minimum(centre - half, detected[:2]), np.maximum(centre + half, detected[2:])])
            else:  # the prediction lags a face that speeds up or turns: grown by a share of its side and its speed
                speed = float(np.abs(np.asarray(obj.estimate_velocity)[:2]).max())
                box = box + np.array([-1, -1, 1, 1]) * (GAP_MARGIN * side + speed) * missed
                report.faces_filled_by_tracking += 1
            live = np.asarray(obj.live_points)[2:]
            keypoints = np.where(live[:, None], obj.estimate[2:], -1.0)
            out.append((box, keypoints, obj.id))
        for detection in detections:  # the safety net: a detection is anonymised even if no track claims it
            if id(detection) not in claimed:
                report.faces_untracked += 1
                self.next_untracked += 1
                out.append((detection.data.box, detection.data.keypoints, self.next_untracked))
        report.tracks = len(self.last_seen)
        return out


def _read(container, stream, frames: queue.Queue, audio) -> None:
    """The reader thread: decoded frames (and, with audio, its packets in order) into the queue; None ends it."""
    try:
        streams = (stream, audio) if audio is not None else (stream,)
        for packet in container.demux(*streams):
            if packet.stream is audio:
                frames.put(("audio", packet))
                continue
            for frame in packet.decode():
                frames.put(("video", frame))
        frames.put(None)
    except Exception as error:  # handed to the main thread, which reports it for this file
        frames.put(("error", error))


def anonymize_video(source: Path, target: Path, anonymizer: Anonymizer, detections: list | None, detector, key: int,
                    args) -> dict:
    """Anonymise ``source`` into ``target`` (atomically); ``detections``: per frame a list of ``Face`` (or None:
    ``detector`` runs on every frame). Returns the video's report; a file that cannot be decoded is a
    ``DataError``."""
    import av

    try:
        container = av.open(str(source))
    except av.error.FFmpegError as error:
        raise DataError("bad_video", str(source), f"cannot open the video: {error}") from None
    if not container.streams.video:
        container.close()
        raise DataError("bad_video", str(source), "no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    audio = container.streams.audio[0] if args.keep_audio and container.streams.audio else None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(target)
    output = av.open(str(tmp), "w")
    out = output.add_stream("libx264", rate=stream.average_rate or stream.guessed_rate)
    out.width, out.height = stream.codec_context.width, stream.codec_context.height
    source_format = stream.codec_context.format.name if stream.codec_context.format else "yuv420p"
    out.pix_fmt = source_format if source_format in H264_PIXEL_FORMATS else "yuv420p"
    out.time_base = stream.time_base
    out.options = {"crf": str(args.crf)}
    out_audio = output.add_stream_from_template(audio) if audio is not None else None
    frames: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
    reader = threading.Thread(target=_read, args=(container, stream, frames, audio), daemon=True)
    reader.start()
    tracker, report = FaceTracker(args.max_gap), VideoReport()
    pending: list = []
    try:
        while (entry := frames.get()) is not None:
            kind, value = entry
            if kind == "error":
                raise DataError("bad_video", str(source), f"decoding failed after {report.frames} frames "
                                f"(truncated or damaged): {value}")
            if kind == "audio":
                if value.dts is not None:
                    value.stream = out_audio
                    output.mux(value)
                continue
            rgb = value.to_ndarray(format="rgb24")
            index = report.frames
            report.frames += 1
            if detections is not None:
                if index >= len(detections):
                    raise DataError("bad_detections", str(source), f"the detections file lists {len(detections)} "
                                    f"frames; the video has more")
                faces = detections[index]
            else:
                faces = detector(rgb)
            pending.append((value, rgb, tracker.update(faces, report)))
            if len(pending) >= FLUSH_FRAMES or sum(len(f) for *_, f in pending) >= anonymizer.batch_size:
                _flush(pending, anonymizer, key, out, output, report)
        _flush(pending, anonymizer, key, out, output, report)
        for packet in out.encode():
            output.mux(packet)
    except BaseException:
        output.close()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        while reader.is_alive():  # let the reader finish (it may be blocked on a full queue)
            try:
                frames.get(timeout=0.1)
            except queue.Empty:
                pass
        container.close()
    output.close()
    if detections is not None and report.frames != len(detections):
        tmp.unlink(missing_ok=True)
        raise DataError("bad_detections", str(source), f"the detections file lists {len(detections)} frames; the "
                        f"video has {report.frames}")
    commit(tmp, target)
    return {"frames": report.frames, "tracks": report.tracks, "faces_detected": report.faces_detected,
            "faces_filled_by_tracking": report.faces_filled_by_tracking, "faces_untracked": report.faces_untracked,
            "generated": report.generated, "generated_without_keypoints": report.generated_without_keypoints,
            "blurred": report.blurred, "audio": "kept" if audio is not None else "dropped"}


def _flush(pending: list, anonymizer: Anonymizer, key: int, out, output, report: VideoReport) -> None:
    """Generate the faces of the pending frames in one batch, then encode the frames in order."""
    import av

    if not pending:
        return
    images = [rgb for _, rgb, _ in pending]
    boxes = [np.array([b for b, _, _ in faces]).reshape(-1, 4) for *_, faces in pending]
    points = [np.array([k for _, k, _ in faces]).reshape(-1, NUM_KEYPOINTS, 2) for *_, faces in pending]
    ids = [[t for _, _, t in faces] for *_, faces in pending]
    results = anonymizer.many(images, boxes, points, [key] * len(images), face_ids=ids)
    for (frame, _, _), (result, face_report) in zip(pending, results, strict=True):
        report.generated += face_report.generated
        report.generated_without_keypoints += face_report.generated_without_keypoints
        report.blurred += face_report.blurred
        new = av.VideoFrame.from_ndarray(result, format="rgb24").reformat(format=out.pix_fmt)
        new.pts, new.time_base = frame.pts, frame.time_base
        for packet in out.encode(new):
            output.mux(packet)
    pending.clear()
