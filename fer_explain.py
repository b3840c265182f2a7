"""What the model looked at: Grad-CAM heat maps (Selvaraju et al., 2017; HiResCAM) of the
model's last convolutional block, drawn over the faces of a frame or written as
one picture per face with its top probabilities."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

import fer_common as fer
from fer_common import UserError

HEAT_OPACITY = 0.6  # how much of a face the hottest heat covers; cold regions stay clear
CARD_SIZE = 192  # px: each picture of an explanation card (face, heat map)


class GradCam:
    """Heat maps, one (48, 48) array in [0, 1] per face, of where the last
    convolutional block saw evidence for the emotion asked about.

    Grad-CAM in its element-wise form (HiResCAM, Draelos & Carin, 2020): each
    feature map times the gradient of the emotion's score at the same place, summed
    over the maps, positive part kept. Plain Grad-CAM first averages the gradient
    over the image, which suits networks that end in global pooling; this one ends
    in Flatten + Dense, where the average lost the sign: on the shipped model its
    maps were empty (all negative) for 4 of 5 faces of the README picture, a
    smiling face called Happy at 85 % among them. The score is the emotion's logit
    less the mean logit, read from the model's softmax as log p - mean(log p): the
    model's calibration (a temperature folded into its last layer) only scales it,
    so the normalised map is the same."""

    def __init__(self, model):
        if isinstance(model, fer.LiteRTModel):
            raise UserError(
                "--explain needs the Keras model (fer.json + fer.h5, or a .keras file): "
                "a LiteRT file has no gradients"
            )
        if not isinstance(model, fer.keras.Sequential):
            raise UserError("--explain needs a keras.Sequential model, as training writes")
        cut = end_of_last_conv_block(model)
        self.margins = cropped_margins(model)
        self.block, self.head = model.layers[:cut], model.layers[cut:]
        gradients = GRADIENTS.get(fer.keras.backend.backend())
        if gradients is None:
            raise UserError(
                f"--explain works with the TensorFlow and JAX backends, "
                f"not {fer.keras.backend.backend()}"
            )
        self.gradients = gradients(self.features, self.score)
        self(np.zeros((1, fer.IMAGE_SIZE, fer.IMAGE_SIZE, 1)), fer.EMOTIONS[:1])  # compile now

    def __call__(self, faces: np.ndarray, emotions: list[str] | tuple[str, ...]) -> np.ndarray:
        """Heat maps (N, 48, 48) of faces (N, 48, 48, 1), each for its emotion."""
        if len(faces) == 0:
            return np.zeros((0, fer.IMAGE_SIZE, fer.IMAGE_SIZE), np.float32)
        classes = np.array([fer.EMOTIONS.index(emotion) for emotion in emotions], np.int32)
        features, gradients = self.gradients(np.asarray(faces, np.float32), classes)
        features, gradients = np.asarray(features, np.float32), np.asarray(gradients, np.float32)
        maps = np.maximum((features * gradients).sum(axis=-1), 0)  # (N, h, w)
        return np.stack([to_face_size(heat, self.margins) for heat in maps])

    def features(self, faces):
        """The last convolutional block's feature maps (N, h, w, channels)."""
        for layer in self.block:
            faces = layer(faces, training=False)
        return faces

    def score(self, features, classes):
        """The sum over faces of each face's emotion's logit less the mean logit."""
        probabilities = features
        for layer in self.head:
            probabilities = layer(probabilities, training=False)
        log_p = fer.keras.ops.log(fer.keras.ops.maximum(probabilities, 1e-30))
        centred = log_p - fer.keras.ops.mean(log_p, axis=1, keepdims=True)
        return fer.keras.ops.sum(fer.keras.ops.take_along_axis(centred, classes[:, None], axis=1))


def end_of_last_conv_block(model) -> int:
    """The index of the first layer after the last Conv2D and the layers that keep
    its output's shape (normalisation, activation): where pooling or Flatten start."""
    conv = fer.keras.layers.Conv2D
    convs = [i for i, layer in enumerate(model.layers) if isinstance(layer, conv)]
    if not convs:
        raise UserError("--explain needs a model with a Conv2D layer (Grad-CAM)")
    shape = model.layers[convs[-1]].output.shape
    cut = convs[-1] + 1
    while cut < len(model.layers) and model.layers[cut].output.shape == shape:
        cut += 1
    return cut


def cropped_margins(model) -> tuple[tuple[int, int], tuple[int, int]]:
    """The ((top, bottom), (left, right)) pixels the model's Cropping2D layers cut off
    the face before its convolutions see it."""
    crop = fer.keras.layers.Cropping2D
    cut = [layer.cropping for layer in model.layers if isinstance(layer, crop)]
    (top, bottom), (left, right) = np.sum([((0, 0), (0, 0)), *cut], axis=0)
    return (int(top), int(bottom)), (int(left), int(right))


def to_face_size(heat: np.ndarray, margins: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
    """A coarse heat map scaled to the face (48x48) and to [0, 1] (its hottest point: 1);
    `margins` (as `cropped_margins` returns) stay cold: the model never saw them."""
    (top, bottom), (left, right) = margins
    size = (fer.IMAGE_SIZE - left - right, fer.IMAGE_SIZE - top - bottom)  # (width, height)
    heat = cv2.resize(heat.astype(np.float32), size, interpolation=cv2.INTER_CUBIC)
    heat = np.pad(np.maximum(heat, 0), margins)  # (cubic interpolation overshoots a little)
    hottest = heat.max()
    return heat / hottest if hottest > 0 else heat


# --------------------------------------------------------------------------
# Gradients: each backend's own tool, compiled once per batch size
# --------------------------------------------------------------------------


def tensorflow_gradients(features: Callable, score: Callable) -> Callable:
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def run(faces, classes):
        maps = features(faces)
        with tf.GradientTape() as tape:
            tape.watch(maps)
            total = score(maps, classes)
        return maps, tape.gradient(total, maps)

    return run


def jax_gradients(features: Callable, score: Callable) -> Callable:
    import jax

    @jax.jit
    def run(faces, classes):
        maps = features(faces)
        return maps, jax.grad(score)(maps, classes)

    return run


GRADIENTS = {"tensorflow": tensorflow_gradients, "jax": jax_gradients}


# --------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------


def blend_heat(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """A BGR image with a heat map (same height and width, in [0, 1]) laid over it:
    hot regions in warm colours, cold ones left as they are."""
    colours = cv2.applyColorMap((255 * heat).astype(np.uint8), cv2.COLORMAP_JET)
    alpha = HEAT_OPACITY * heat[..., None]
    return (image * (1 - alpha) + colours * alpha).astype(np.uint8)


def overlay(frame: np.ndarray, heat: np.ndarray, to_crop: np.ndarray) -> None:
    """Lay a face's heat map (48x48) over the frame where the face was cut from;
    `to_crop` maps frame pixels to the crop's (fer_faces.crop_transform)."""
    size = fer.IMAGE_SIZE
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float32)[:, None]
    x, y, w, h = cv2.boundingRect(cv2.transform(corners, cv2.invertAffineTransform(to_crop)))
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, frame.shape[1]), min(y + h, frame.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    shift = to_crop.copy()
    shift[:, 2] += to_crop[:, :2] @ (x0, y0)  # from the region's pixels, not the frame's
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    region_heat = cv2.warpAffine(heat, shift, (x1 - x0, y1 - y0), flags=flags, borderValue=0)
    frame[y0:y1, x0:x1] = blend_heat(frame[y0:y1, x0:x1], region_heat)


def card(face: np.ndarray, heat: np.ndarray, probabilities: np.ndarray, label: str) -> np.ndarray:
    """One face's explanation as a BGR image: the face the model saw, the heat map
    over it (for the top emotion, the first of the three), and the shown label with
    the top-3 probabilities."""
    size = (CARD_SIZE, CARD_SIZE)
    big = cv2.cvtColor(cv2.resize(face, size, interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)
    hot = blend_heat(big, cv2.resize(heat, size, interpolation=cv2.INTER_LINEAR))
    panel = np.full((CARD_SIZE, 260, 3), 255, np.uint8)
    text = {"fontFace": cv2.FONT_HERSHEY_SIMPLEX, "lineType": cv2.LINE_AA}
    cv2.putText(panel, label, (12, 36), fontScale=0.9, color=(0, 0, 0), thickness=2, **text)
    for rank, index in enumerate(np.argsort(probabilities)[::-1][:3]):
        top, p = 62 + 42 * rank, float(probabilities[index])
        cv2.putText(panel, f"{fer.EMOTIONS[index]} {p:.0%}", (12, top), fontScale=0.55,
                    color=(40, 40, 40), thickness=1, **text)  # fmt: skip
        cv2.rectangle(panel, (12, top + 8), (12 + round(230 * p), top + 20), (200, 120, 40), -1)
    gap = np.full((CARD_SIZE, 8, 3), 255, np.uint8)
    return np.hstack([big, gap, hot, gap, panel])
