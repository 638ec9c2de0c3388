"""Annotate the demo photos: one face box and the 7 keypoints per photo, with MediaPipe.

    pip install mediapipe==0.10.21   # bundles its face-detection and pose models: works offline
    python data/demo/annotate.py     # rewrites data/demo/annotations.json

MediaPipe is needed only to re-create annotations.json; the toolkit itself never imports it.
The file has the format of ``python -m data.prepare --detections``: per photo a list of faces,
each a box and keypoints in photo pixels, in SafeFakes order (data.keypoints.KEYPOINT_NAMES), -1 when absent.
"""

import json
from pathlib import Path

import mediapipe as mp
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
# MediaPipe Pose landmark index of each SafeFakes keypoint (both name sides from the subject's view).
POSE_INDEX = {"nose": 0, "left_eye": 2, "right_eye": 5, "left_ear": 7, "right_ear": 8, "left_shoulder": 11,
              "right_shoulder": 12}
MIN_VISIBILITY = 0.5


def annotate(path: Path, detector, pose) -> dict:
    photo = np.asarray(Image.open(path).convert("RGB"))
    height, width = photo.shape[:2]
    faces = detector.process(photo).detections or []
    if len(faces) != 1:
        raise SystemExit(f"{path}: expected exactly one face, MediaPipe found {len(faces)}")
    rel = faces[0].location_data.relative_bounding_box
    box = [rel.xmin * width, rel.ymin * height, (rel.xmin + rel.width) * width, (rel.ymin + rel.height) * height]
    landmarks = pose.process(photo).pose_landmarks
    keypoints = []
    for index in POSE_INDEX.values():
        point = landmarks.landmark[index] if landmarks else None
        inside = point is not None and 0 <= point.x < 1 and 0 <= point.y < 1
        if inside and point.visibility >= MIN_VISIBILITY:
            keypoints.append([round(point.x * width, 1), round(point.y * height, 1)])
        else:
            keypoints.append([-1.0, -1.0])
    return {"box": [round(v, 1) for v in box], "keypoints": keypoints}


def main() -> None:
    photos = sorted((HERE / "photos").glob("*.jpg"))
    with mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5) as detector, \
            mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1) as pose:
        annotations = {path.name: annotate(path, detector, pose) for path in photos}
    lines = [f" {json.dumps(name)}: [{json.dumps(entry)}]" for name, entry in annotations.items()]
    (HERE / "annotations.json").write_text("{\n" + ",\n".join(lines) + "\n}\n")
    print(f"annotated {len(annotations)} photos")


if __name__ == "__main__":
    main()
