"""An annotation collection as a layer of `streamconv view`: served like any output, shown
over the volumes given with it, its properties usable in the shader (`prop_<id>()`; a colour
property colours the annotations), each relationship linked to the first segmentation shown,
so that selecting a segment there lists and highlights its annotations (Neuroglancer reads the
segment's relationship entry)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .info import ANNOTATIONS_TYPE

#: where `convert --annotations` puts a collection inside its output (`beside.py`)
COLLECTION_DIR = "annotations"


class Info(Protocol):
    name: str

    def info(self) -> bytes | None: ...


def collection_info(data: bytes | None) -> dict | None:
    """The parsed info when it is an annotation collection's."""
    try:
        info = json.loads(data or b"")
    except ValueError:
        return None
    return info if isinstance(info, dict) and info.get("@type") == ANNOTATIONS_TYPE else None


def split_collections(datasets: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """(volumes, annotation collections) of the served datasets, in their order."""
    volumes = [d for d in datasets if collection_info(d.info()) is None]
    collections = [d for d in datasets if collection_info(d.info()) is not None]
    return volumes, collections


def shader(info: dict) -> str | None:
    """A colour property colours the annotations; otherwise Neuroglancer's default shader."""
    colour = next((p["id"] for p in info.get("properties", []) if p.get("type") in ("rgb", "rgba")), None)
    return None if colour is None else f"void main() {{\n  setColor(prop_{colour}());\n}}\n"


def annotation_layers(collections: Sequence[Any], layers: Sequence[dict], data_url: Callable[[str], str]) -> list[dict]:
    """One annotation layer per collection, read from `data_url(name)`; relationships linked to the
    first segmentation layer; the collection inside a volume output (`<name>/annotations`, from
    `convert --annotations`) placed by its volume layer's transform."""
    segmentation = next((layer["name"] for layer in layers if layer.get("type") == "segmentation"), None)
    named = {layer["name"]: layer for layer in layers}
    out = []
    for d in collections:
        info = collection_info(d.info()) or {}
        layer: dict = {"type": "annotation", "source": data_url(d.name), "name": d.name}
        owner, _, inside = d.name.rpartition("/")
        placed = named.get(owner, {}).get("source") if inside == COLLECTION_DIR else None
        if isinstance(placed, dict) and "transform" in placed:
            # a conversion's own collection is in its volume's voxels: placed as the volume is
            layer["source"] = {"url": layer["source"], "transform": placed["transform"]}
        code = shader(info)
        if code:
            layer["shader"] = code
        if segmentation is not None and info.get("relationships"):
            layer["linkedSegmentationLayer"] = {r["id"]: segmentation for r in info["relationships"]}
        out.append(layer)
    return out
