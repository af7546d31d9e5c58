"""The AffectVLM module: one shared CLIP image encoder for every rendered view, view fusion, and a
text classifier built from a prompt ensemble (mean of normalised text embeddings per class)."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from affectvlm.errors import ConfigError, InputError
from affectvlm.prompts import DEFAULT_CLASSES, PromptSet, as_prompt_set, parse_classes

FUSIONS = ("mean", "attention")


class AttentionFusion(nn.Module):
    """Learned attention over views: a small MLP scores each view embedding, softmax over views.

    The last layer starts at zero, so an untrained module is exactly the mean fusion.
    """

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.dim, self.hidden = int(dim), int(hidden)
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.score[2].weight)
        nn.init.zeros_(self.score[2].bias)

    def weights(self, z: torch.Tensor) -> torch.Tensor:
        """(B, V, D) -> (B, V) attention weights summing to 1 over views."""
        return torch.softmax(self.score(z).squeeze(-1), dim=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (self.weights(z).unsqueeze(-1) * z).sum(1)


def _default_render() -> Any:
    from affectvlm.render import RenderSettings

    return RenderSettings()


class AffectVLM(nn.Module):
    """Multiview emotion classifier around an open_clip model.

    ``encode_views((B, V, 3, H, W) in [0, 1]) -> (B, V, D)`` (the model's own resize and mean/std are
    applied inside, so renderer output goes in directly); ``fuse -> (B, D)``; ``forward -> logits (B, C)``
    = ``logit_scale.exp() * cos(fused, class text embedding)`` (+ bias for SigLIP-style models).
    """

    def __init__(self, clip: nn.Module, tokenizer: Callable[..., torch.Tensor], *, arch: str,
                 model_cfg: Mapping[str, Any], preprocess_cfg: Mapping[str, Any] | None = None,
                 classes: Sequence[str] | None = None, prompts: Any = None, render: Any = None,
                 fusion: str = "mean", spec: str = "", provenance: Mapping[str, Any] | None = None):
        super().__init__()
        if fusion not in FUSIONS:
            raise ConfigError(f"unknown fusion {fusion!r}; choose from {FUSIONS}")
        self.clip = clip
        self.tokenizer = tokenizer
        self.arch = arch
        self.model_cfg = dict(model_cfg)
        import open_clip

        self.preprocess_cfg = dict(preprocess_cfg or open_clip.get_model_preprocess_cfg(clip))
        self.embed_dim = int(self.model_cfg.get("embed_dim") or clip.text_projection.shape[-1])
        self.fusion = fusion
        self.attention = AttentionFusion(self.embed_dim) if fusion == "attention" else None
        size = getattr(clip.visual, "image_size", None) or self.preprocess_cfg.get("size", 224)
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
        mean = self.preprocess_cfg.get("mean") or open_clip.OPENAI_DATASET_MEAN
        std = self.preprocess_cfg.get("std") or open_clip.OPENAI_DATASET_STD
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("classifier", torch.zeros(0, self.embed_dim), persistent=False)
        self.render = render if render is not None else _default_render()
        self.mirror = True  # in eval mode, average each scan with its mirror image (see embed)
        # mean fused embedding of the training scans (from the checkpoint; None if unknown) and, on a copy adapted
        # to a scored set (affectvlm.adapt), the shift that moves that set's mean onto it (see embed)
        self.embedding_mean: torch.Tensor | None = None
        self.embedding_shift: torch.Tensor | None = None
        # whether scoring each scan against its subject's neutral scan read better on the validation subjects of
        # the run that trained this model (None: not checked; affectvlm.reference.resolve_neutral)
        self.neutral_reference: bool | None = None
        # whether adapting to a scored set (predict --adapt) read better on those validation subjects (None: not
        # checked; affectvlm.adapt.adapt_for)
        self.adapt_to_set: bool | None = None
        # whether scoring each subject relative to its own mean (predict --subject-mean) read better there (None: not
        # checked; affectvlm.subjects.resolve_subject_mean)
        self.subject_mean: bool | None = None
        self.spec = spec
        self.provenance = dict(provenance or {})
        self.classes: tuple[str, ...] = ()
        self.prompts: PromptSet = as_prompt_set(prompts)
        self.set_classes(classes or DEFAULT_CLASSES, self.prompts)

    # ------------------------------------------------------------------ text side
    @property
    def device(self) -> torch.device:
        return self.clip.logit_scale.device

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts)).to(self.device)

    def encode_texts(self, texts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        """(N, D) text embeddings (with gradients if enabled)."""
        z = self.clip.encode_text(self.tokenize(texts))
        return F.normalize(z, dim=-1) if normalize else z

    def class_embeddings(self, classes: Sequence[str], prompts: PromptSet, batch: int = 256) -> torch.Tensor:
        """(C, D): per class, the re-normalised mean of its normalised prompt embeddings."""
        texts, owner = [], []
        for i, c in enumerate(classes):
            t = prompts.zeroshot_texts(c)
            texts += t
            owner += [i] * len(t)
        z = torch.cat([self.encode_texts(texts[i:i + batch]) for i in range(0, len(texts), batch)])
        own = torch.tensor(owner, device=z.device)
        sums = torch.zeros(len(classes), z.shape[1], device=z.device, dtype=z.dtype).index_add_(0, own, z)
        return F.normalize(sums, dim=-1)

    def set_classes(self, classes: Sequence[str] | str, prompts: Any = None) -> None:
        """Rebuild the text classifier for ``classes`` from the prompt ensemble (zero-shot)."""
        names = parse_classes(classes)
        ps = self.prompts if prompts is None else as_prompt_set(prompts)
        was_training = self.training
        self.eval()
        with torch.no_grad():
            self.classifier = self.class_embeddings(names, ps).float()
        self.train(was_training)
        self.classes, self.prompts = tuple(names), ps

    def refresh_classifier(self) -> None:
        """Recompute the classifier after the text tower changed (e.g. after training)."""
        self.set_classes(self.classes, self.prompts)

    # ------------------------------------------------------------------ image side
    def can_take(self, size: int) -> bool:
        """Whether :meth:`set_input_size` can make the image tower take ``size`` px images."""
        pool = getattr(self.clip.visual, "attnpool", None)
        return getattr(pool, "positional_embedding", None) is not None and size >= 32 and size % 32 == 0

    def set_input_size(self, size: int) -> None:
        """Let the image tower take ``size`` px images (a multiple of 32) instead of resizing them to its own size.

        A convolutional tower (open_clip's ModifiedResNet) keeps its weights; the attention pool's positional
        grid is interpolated (bicubic) to the new feature grid. The saved config records the new size, so a
        checkpoint written afterwards loads at it. ConfigError for towers without such a grid (ViTs)."""
        size = int(size)
        if (size, size) == self.image_size:
            return
        if not self.can_take(size):
            raise ConfigError(f"{self.arch}: the image tower's input size cannot be changed to {size} px (only a "
                              "ModifiedResNet's, to a multiple of 32)")
        pool = self.clip.visual.attnpool
        pe = pool.positional_embedding
        old = int(round((pe.shape[0] - 1) ** 0.5))
        grid = pe.detach()[1:].float().reshape(old, old, -1).permute(2, 0, 1)[None]
        grid = F.interpolate(grid, size=(size // 32, size // 32), mode="bicubic", align_corners=False)[0]
        new = torch.cat([pe.detach()[:1].float(), grid.permute(1, 2, 0).reshape((size // 32) ** 2, -1)])
        pool.positional_embedding = nn.Parameter(new.to(pe.dtype).to(pe.device), requires_grad=pe.requires_grad)
        self.clip.visual.image_size = size
        vision = dict(self.model_cfg.get("vision_cfg") or {})
        vision["image_size"] = size
        self.model_cfg["vision_cfg"] = vision
        self.preprocess_cfg["size"] = size
        self.image_size = (size, size)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> resized to the model's image size and normalised."""
        if images.shape[-2:] != self.image_size:
            images = F.interpolate(images, size=self.image_size, mode="bilinear", align_corners=False,
                                   antialias=images.shape[-1] > self.image_size[-1])
        return (images - self.pixel_mean.to(images.dtype)) / self.pixel_std.to(images.dtype)

    def encode_views(self, images: torch.Tensor) -> torch.Tensor:
        """(B, V, 3, H, W) in [0, 1] -> (B, V, D) unit-norm embeddings (one shared encoder)."""
        if not isinstance(images, torch.Tensor):
            raise InputError("images", f"expected a torch.Tensor, got {type(images).__name__}")
        if images.ndim == 4:  # (B, 3, H, W): one view per scan
            images = images.unsqueeze(1)
        if images.ndim != 5 or images.shape[2] != 3:
            raise InputError("images", f"expected shape (B, V, 3, H, W), got {tuple(images.shape)}")
        b, v = images.shape[:2]
        x = self.preprocess(images.reshape(b * v, *images.shape[2:]).to(self.device, torch.float32))
        z = self.clip.encode_image(x.to(self._input_dtype()), normalize=True)
        return z.reshape(b, v, -1)

    def _input_dtype(self) -> torch.dtype:
        return self.clip.logit_scale.dtype

    def fuse(self, z: torch.Tensor) -> torch.Tensor:
        """(B, V, D) -> (B, D) unit-norm: mean of the view embeddings, or learned attention."""
        if self.attention is not None:
            fused = self.attention(z)
        else:
            fused = z.mean(1)
        return F.normalize(fused, dim=-1)

    def embed(self, images: torch.Tensor, views: Sequence | None = None,
              mirror: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, V, 3, H, W) in [0, 1] -> the scans' fused embeddings (B, D) and view embeddings (B, V, D).

        In eval mode with ``mirror`` on (default: the model's ``mirror`` attribute), the fused embedding is the
        normalised mean of the scan's and its mirror image's (:func:`affectvlm.render.mirror.mirror_images`;
        ``views`` default to the model's render views, or to the views scoring renders with ``score_pitches`` when the
        images are that many). A view set without a mirror, or training mode, gives
        the plain fusion. In eval mode an ``embedding_shift`` (set by :mod:`affectvlm.adapt`) is added to the fused
        embedding, which is then normalised again.
        """
        fused, z = self._embed(images, views, mirror)
        if self.embedding_shift is not None and not self.training:
            fused = F.normalize(fused + self.embedding_shift.to(fused), dim=-1)
        return fused, z

    def _embed(self, images: torch.Tensor, views: Sequence | None,
               mirror: bool | None) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            images = images.unsqueeze(1)
        flipped = None
        if (self.mirror if mirror is None else mirror) and not self.training and isinstance(images, torch.Tensor):
            from affectvlm.render.mirror import mirror_images

            flipped = mirror_images(images, self._views_of(images) if views is None else views, self.render.map)
        if flipped is None:
            z = self.encode_views(images)
            return self.fuse(z), z
        both = self.encode_views(torch.cat([images, flipped]))  # one encoder pass for the scan and its mirror
        z, zf = both[:len(images)], both[len(images):]
        return F.normalize(self.fuse(z) + self.fuse(zf), dim=-1), z

    def _views_of(self, images: torch.Tensor) -> Sequence:
        """The views ``images`` (B, V, ...) were rendered from when none are named: the render settings' views, or
        what scoring renders (with ``score_pitches``) when the count says so."""
        scoring = self.render.for_scoring().views
        return scoring if images.shape[1] == len(scoring) else self.render.views

    def view_weights(self, z: torch.Tensor) -> torch.Tensor:
        """(B, V) weight of each view in the fusion (uniform for ``mean``)."""
        if self.attention is not None:
            return self.attention.weights(z)
        return torch.full(z.shape[:2], 1.0 / z.shape[1], device=z.device)

    def logits_from_embedding(self, fused: torch.Tensor) -> torch.Tensor:
        if self.classifier.shape[0] == 0:
            raise ConfigError("no classes set: call set_classes() first")
        logits = self.clip.logit_scale.exp() * fused.float() @ self.classifier.to(fused.device).T
        bias = getattr(self.clip, "logit_bias", None)
        return logits + bias if bias is not None else logits

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, V, 3, H, W) -> logits (B, C) (with the mirror average in eval mode, see :meth:`embed`)."""
        return self.logits_from_embedding(self.embed(images)[0])

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        """(B, V, 3, H, W) -> class probabilities (B, C), softmax over ``classes``."""
        return torch.softmax(self.forward(images).float(), dim=-1)

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, classes={list(self.classes)}, fusion={self.fusion!r}, spec={self.spec!r}"
