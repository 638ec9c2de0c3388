"""Feature extractors for FID. Each maps ``(N, 3, H, W)`` float images in [-1, 1] (any H = W) to ``(N, d)``
features and has ``num_features = d``.

- ``onet``: the output network of MTCNN (Zhang et al. 2016) with the real pretrained weights that
  facenet-pytorch ships (``facenet_pytorch/data/onet.pt``); its 256-d features tell faces from non-faces,
  so FID works offline. Numbers are not comparable to Inception FID.
- ``inception``: the standard FID Inception-v3 through torchmetrics / torch-fidelity (optional extra).
- ``torchscript``: any TorchScript module a user points to, fed the same [-1, 1] images.
"""

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from data.crop import FACE_FRACTION
from data.record import to_uint8_image

EXTRACTORS = ("onet", "inception", "torchscript")


def facenet_onet_path() -> Path:
    """facenet-pytorch's ``data/onet.pt``, found without importing the package (its import needs torchvision)."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the onet extractor needs MTCNN's ONet weights: pip install --no-deps facenet-pytorch==2.6.0 "
            "(ships data/onet.pt), or pass weights_path=/path/to/onet.pt"
        )
    return Path(spec.submodule_search_locations[0]) / "data" / "onet.pt"


class ONetFeatures(nn.Module):
    """MTCNN's ONet up to its 256-d feature layer.

    ONet was trained on tight face boxes: it sees the central ``FACE_FRACTION`` (1/1.7) of each crop (where
    the DeepPrivacy crop rule, +35 % per side, puts the face box), resized to 48x48. On the demo faces its own face
    classifier then gives p(face) = 0.999 (0.31 on the whole crop, 0.0006 on noise).
    """

    num_features = 256

    def __init__(self, weights_path: str | Path | None = None) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        # The classification/regression heads are part of the weights file; kept so it loads strictly.
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)
        path = Path(weights_path) if weights_path else facenet_onet_path()
        if not path.is_file():
            raise FileNotFoundError(f"ONet weights not found at {path}")
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.requires_grad_(False).eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # MTCNN feeds (pixel - 127.5) / 128: the [-1, 1] range of our images.
        size = images.shape[-1]
        margin = round(size * (1 - FACE_FRACTION) / 2)
        face = images[..., margin : size - margin, margin : size - margin].float()
        x = F.interpolate(face, size=(48, 48), mode="bilinear", align_corners=False, antialias=True)
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu4(self.conv4(x))
        return self.prelu5(self.dense5(x.permute(0, 3, 2, 1).flatten(1)))  # Caffe's flattening order


class InceptionFeatures(nn.Module):
    """The FID Inception-v3 (pool3, 2048-d) from torchmetrics, fed uint8 images as it expects."""

    num_features = 2048

    def __init__(self, weights_path: str | Path | None = None) -> None:
        super().__init__()
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3
            from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError(f"the inception extractor needs torchmetrics' image extras: {error}") from error
        if not _TORCH_FIDELITY_AVAILABLE:
            raise ImportError(
                "the inception extractor needs torch-fidelity and torchvision: pip install 'safefakes[inception]' "
                "(with a torch build that has a matching torchvision). Its weights are downloaded on first use, or "
                "read from weights_path (pt_inception-2015-12-05-6726825d.pth). Offline, use extractor=onet."
            )
        self.net = NoTrainInceptionV3(
            name="inception-v3-compat", features_list=["2048"],
            feature_extractor_weights_path=str(weights_path) if weights_path else None,
        )

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(to_uint8_image(images))


class TorchScriptFeatures(nn.Module):
    """A user's TorchScript feature network, called on [-1, 1] images."""

    probe_resolution = 64  # a dry run at this size tells the feature dimension

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        if not Path(path).is_file():
            raise FileNotFoundError(f"no TorchScript feature extractor at {path}")
        self.net = torch.jit.load(str(path), map_location="cpu").eval()
        with torch.no_grad():
            out = self.net(torch.zeros(2, 3, self.probe_resolution, self.probe_resolution))
        if out.ndim != 2:
            raise ValueError(f"{path}: a feature extractor must return (N, d), got {tuple(out.shape)}")
        self.num_features = int(out.shape[1])

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.float())


def build_extractor(name: str, weights_path: str | None = None) -> nn.Module:
    """``onet`` | ``inception`` | ``torchscript`` (``weights_path`` = the TorchScript file)."""
    if name == "onet":
        return ONetFeatures(weights_path)
    if name == "inception":
        return InceptionFeatures(weights_path)
    if name == "torchscript":
        if not weights_path:
            raise ValueError("extractor torchscript needs weights_path: the TorchScript file")
        return TorchScriptFeatures(weights_path)
    raise ValueError(f"unknown FID extractor {name!r}; choose one of {EXTRACTORS}")
