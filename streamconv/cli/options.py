"""The options several commands share, each defined once, and `bundled`, which hands a command a
group of them as one typed object.

Typer builds a command's options from its function's signature, so before this module every
command spelled out its run options (memory, workers, overwrite, resume, quiet, verbose, debug),
neuroglancer-scripts' file options (gzip, compresslevel, flat) and volume options again, and
their help could drift apart. Here each group is a frozen dataclass whose fields carry their typer
option and default; `bundled` puts the fields (or the ones a command offers) into the command's
signature and calls the command with one instance per group. Option names, defaults, help texts
and flag spellings are those users' scripts already use: change none of them lightly.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypedDict, get_type_hints

import typer

from ..annotations.coords import COORDINATES
from ..annotations.schema import TYPES as ANNOTATION_TYPES
from ..encodings import ENCODINGS
from ..encodings.images import PLANES
from ..format.geometry import triple
from ..format.pyramid import VOLUME_TYPES
from ..kernels.downsampling import METHODS
from ..meshing import MESH_FORMATS
from ..sources import VOXEL_ORDERS
from ..stores import Location, StorageOptions

# The values of a choice come from the library's own list, so that a new encoding or method
# reaches the command line without a second list here. Typer offers and checks the values of a
# Literal (the help and the error for a wrong value are those an Enum gives) and hands the
# command the plain string the library takes; to a type checker a choice is that string.
if TYPE_CHECKING:
    from ..annotations.job import AnnotationOptions

    VolumeType = str
    Encoding = str
    Method = str
    DownscalingMethod = str
    Plane = str
    MeshFormat = str
    VoxelOrderChoice = str
    AnnotationKind = str
    Coordinates = str
else:
    from typing import Literal

    VolumeType = Literal[VOLUME_TYPES]
    Encoding = Literal[ENCODINGS]
    Method = Literal[METHODS]
    DownscalingMethod = Literal[("auto",) + METHODS]
    Plane = Literal[PLANES]
    MeshFormat = Literal[MESH_FORMATS]
    VoxelOrderChoice = Literal[VOXEL_ORDERS]
    AnnotationKind = Literal[tuple(ANNOTATION_TYPES)]
    Coordinates = Literal[COORDINATES]

# How a command runs (the fields of RunOptions).
Memory = Annotated[Optional[str], typer.Option(
    help="Bound on the memory of the whole process tree, e.g. 512MiB, 8GiB "
         "[default: half of the available memory]")]
Workers = Annotated[Optional[int], typer.Option(
    help="Worker processes [default: CPU count]; 0 runs everything in one process")]
Scheduler = Annotated[Optional[str], typer.Option(
    help="Run on a Dask cluster: its scheduler's tcp://HOST:PORT, or 'local' for a LocalCluster "
         "of --workers processes; --memory is then the budget of each worker (pip install "
         "streamconv[dask])")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace what the output already holds.")]
Resume = Annotated[bool, typer.Option(
    help="Finish an unfinished run of the same step in the output; --no-resume refuses.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log the plan (slabs, workers, memory).")]
Debug = Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")]
StorageOption = Annotated[Optional[list[str]], typer.Option(
    metavar="KEY=VALUE",
    help="An option of the filesystem of the output or of a pyramid read from a URL, e.g. "
         "endpoint_url=http://minio:9000 or client_kwargs.region_name=eu-west-1; repeatable. "
         "Credentials come from the filesystem's usual environment (docs/storage.md)")]

# neuroglancer-scripts' file options (the fields of FileOptions). Their defaults differ: we write
# flat, uncompressed chunks, what Neuroglancer and tensorstore read from any static server
# (docs/cli.md).
Gzip = Annotated[bool, typer.Option("--gzip/--no-gzip", " /--no-compression",
                                    help="Write gzip-compressed <name>.gz files (sharded "
                                         "scales: gzip the chunks in the shards).")]
CompressLevel = Annotated[int, typer.Option(min=0, max=9, help="gzip compression level.")]
Flat = Annotated[bool, typer.Option(
    "--flat", help="Accepted for neuroglancer-scripts scripts: chunks are always stored flat.")]

# Reading a volume.
IgnoreScaling = Annotated[bool, typer.Option(
    "--ignore-scaling",
    help="Store the values as the file stores them, unscaled (NIfTI and Analyze scl_slope/scl_inter, "
         "AFNI brick factors, PAR/REC); refused for MINC.")]
InputMin = Annotated[Optional[float], typer.Option(
    help="Input value mapped to the lowest value of the output type (with --input-max).")]
InputMax = Annotated[Optional[float], typer.Option(
    help="Input value mapped to the highest value of the output type (1.0 for float32).")]
Mmap = Annotated[bool, typer.Option(
    "--mmap/--load-full-volume", hidden=True,
    help="Accepted for neuroglancer-scripts scripts: volumes are always streamed.")]

# The pyramid and its chunks.
LayerType = Annotated[VolumeType, typer.Option("--type", help="Layer type.")]
ChunkEncoding = Annotated[Encoding, typer.Option(help="Chunk encoding.")]
ChunkSize = Annotated[int, typer.Option(help="Chunk edge in voxels, a power of two.")]
MaxScales = Annotated[Optional[int], typer.Option(help="At most this many scales.")]
JpegQuality = Annotated[int, typer.Option(help="JPEG quality, 1-100.")]
JpegPlane = Annotated[Plane, typer.Option(help="Plane of the JPEG images.")]
VoxelOrder = Annotated[VoxelOrderChoice, typer.Option(
    help="Volumes: ras stores the voxels in the RAS order closest to the header's affine (axes "
         "permuted and flipped, lossless); file keeps the file's order, as neuroglancer-scripts. "
         "transform.json places either in the input's world (docs/coordinates.md).")]
CsegBlockSize = Annotated[str, typer.Option(help="compressed_segmentation block, X,Y,Z.")]
Downscaling = Annotated[DownscalingMethod, typer.Option(
    help="auto: majority for segmentations, average for images.")]
OutsideValue = Annotated[Optional[float], typer.Option(
    help="Average downsampling: the value of the voxels past an odd edge (e.g. 255 for a white "
         "background) [default: edge blocks average their voxels only]")]

# Sharded output (convert, convert-chunks).
ShardingMode = Annotated[str, typer.Option(
    "--sharding", help="off: one file per chunk; auto: each scale packed into shards of about "
                       "--shard-size; or PRESHIFT,MINISHARD,SHARD bits for every scale. Chunk "
                       "data in the shards is gzip only with --gzip; --meshes are sharded too, "
                       "keyed by label.")]
ShardSize = Annotated[str, typer.Option(
    help="--sharding auto: chunk data per shard, before compression.")]

# Segmentations: names and meshes (convert, generate-meshes, add-segment-names).
SegmentNames = Annotated[Optional[str], typer.Option(
    help="Segmentations: a table of label names (FreeSurfer LUT, FSL atlas XML, TSV, CSV or JSON) "
         "written as segment properties.")]
Meshes = Annotated[bool, typer.Option("--meshes", help="Segmentations: a surface mesh of every label.")]
MeshFormatOption = Annotated[MeshFormat, typer.Option(
    "--mesh-format", help="multilod: Neuroglancer's multi-resolution Draco meshes; legacy: one "
                          "resolution, as mesh-to-precomputed.")]
NamesFile = Annotated[str, typer.Argument(
    help="A table of label names: FreeSurfer LUT, FSL atlas XML, TSV, CSV or JSON.")]

# Annotation collections from tables (`annotations`; `convert --annotations`, where each is
# spelled --annotation-<name>: the flag follows the parameter's name, the rest is defined here).
AnnotationTableFile = Annotated[Optional[str], typer.Option(
    "--annotations", metavar="TABLE",
    help="A table of points, lines, boxes or ellipsoids (CSV, TSV, JSON Lines, JSON, Parquet) written as "
         "an annotation collection in OUTPUT/annotations/, placed in this volume; the "
         "--annotation-* options as those of streamconv annotations (docs/annotations.md)")]
AnnotationTypeOption = Annotated[Optional[AnnotationKind], typer.Option(
    help="Annotation type [default: from the columns: rx,ry,rz: ellipsoid; x1..z2: line; x,y,z: point]")]
AnnotationColumn = Annotated[Optional[list[str]], typer.Option(
    metavar="ROLE=COLUMN", help="The column of a role (x, y, z, x1, y1, z1, x2, y2, z2, rx, ry, rz, id), "
                                "e.g. x=centroid_x; repeatable")]
AnnotationRelationship = Annotated[Optional[list[str]], typer.Option(
    metavar="COLUMN", help="A column of related segment ids (several per cell separated by ; or spaces); "
                           "repeatable [default: a column named segment or segment_id]")]
AnnotationCoordinates = Annotated[Coordinates, typer.Option(
    help="voxel: voxel indices of the image (centres); mm: millimetres of its world space "
         "(its transform.json)")]
AnnotationLimit = Annotated[int, typer.Option(
    help="Annotations per cell of the coarse levels of the spatial index")]
AnnotationSharding = Annotated[str, typer.Option(
    help="auto: indexes of many keys in shard files; off: one file per key")]


def annotation_options(type: str | None, column: list[str] | None, relationship: list[str] | None,
                       coordinates: str, limit: int, sharding: str, image: str | None = None,
                       resolution: str | None = None) -> AnnotationOptions:
    """The library's options from those above (ROLE=COLUMN pairs checked)."""
    from ..annotations.job import AnnotationOptions

    mapping = []
    for item in column or []:
        role, sep, name = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{item!r} is not ROLE=COLUMN", param_hint="ROLE=COLUMN")
        mapping.append((role.strip(), name.strip()))
    return AnnotationOptions(type=type, columns=tuple(mapping),
                             relationships=tuple(relationship) if relationship else None,
                             coordinates=coordinates, image=image, resolution=resolution,
                             limit=limit, sharding=sharding)


# Arguments of the step-by-step and mesh commands.
VolumeFile = Annotated[str, typer.Argument(help="A volume nibabel reads.")]
DatasetDir = Annotated[str, typer.Argument(help="The dataset directory (with its info).")]
PlannedDataset = Annotated[str, typer.Argument(
    help="The dataset directory (its info from generate-scales-info).")]


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a command runs: its resources, what it does to an output already there, what it
    prints. A command that offers only some of these gets the others at their defaults."""

    memory: Memory = None
    workers: Workers = None
    scheduler: Scheduler = None
    overwrite: Overwrite = False
    resume: Resume = True
    quiet: Quiet = False
    verbose: Verbose = False
    debug: Debug = False
    storage_option: StorageOption = None

    def at(self, url: str) -> Location:
        """A path or URL the command reads or writes, with the --storage-option values."""
        return Location.of(url, StorageOptions.parse(self.storage_option or ()))

    def engine(self) -> EngineArgs:
        """The arguments every library call that runs the engine takes from these options."""
        return EngineArgs(memory=self.memory, workers=self.workers, scheduler=self.scheduler,
                          overwrite=self.overwrite, resume=self.resume)


@dataclasses.dataclass(frozen=True)
class FileOptions:
    """neuroglancer-scripts' options for the chunk files; `flat` is accepted and has no effect."""

    gzip: Gzip = False
    compresslevel: CompressLevel = 6
    flat: Flat = False

    def written(self) -> WrittenArgs:
        """The arguments of a library call that writes chunk files."""
        return WrittenArgs(gzip=self.gzip, compresslevel=self.compresslevel)


@dataclasses.dataclass(frozen=True)
class VolumeOptions:
    """How neuroglancer-scripts' volume commands read a volume; `mmap` is accepted and has no
    effect (volumes are always streamed)."""

    ignore_scaling: IgnoreScaling = False
    input_min: InputMin = None
    input_max: InputMax = None
    mmap: Mmap = False

    def reading(self) -> ReadingArgs:
        """The library's reading arguments; --input-min without --input-max is a usage error."""
        if self.input_max is None:
            if self.input_min is not None:
                raise typer.BadParameter("--input-min needs --input-max", param_hint="--input-min")
            return ReadingArgs(ignore_scaling=self.ignore_scaling, input_range=None)
        return ReadingArgs(ignore_scaling=self.ignore_scaling,
                           input_range=(self.input_min or 0.0, self.input_max))


class EngineArgs(TypedDict):
    memory: str | None
    workers: int | None
    scheduler: str | None
    overwrite: bool
    resume: bool


class WrittenArgs(TypedDict):
    gzip: bool
    compresslevel: int


class ReadingArgs(TypedDict):
    ignore_scaling: bool
    input_range: tuple[float, float] | None


BUNDLES: tuple[type, ...] = (RunOptions, FileOptions, VolumeOptions)
Command = Callable[..., None]


def bundled(*, first: tuple[str, ...] = (), **only: tuple[str, ...]) -> Callable[[Command], Command]:
    """Give a command its option groups.

    Each parameter of the command annotated with a bundle (`run: RunOptions`, keyword-only)
    becomes the bundle's options, at that place of the signature: all of them, or the ones
    `only[parameter name]` names (`run=("workers", "debug")`). The options named in `first`
    open the command's options (right after its arguments) instead. Typer reads the signature
    this sets; the command is called with one bundle instance per such parameter.
    """

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        groups: dict[str, tuple[type, tuple[str, ...]]] = {}
        params: list[inspect.Parameter] = []
        for param in signature.parameters.values():
            if param.annotation not in BUNDLES:
                params.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY))
                continue
            fields = _fields(param.annotation)
            names = only.get(param.name, tuple(fields))
            if not set(names) <= set(fields):
                raise TypeError(f"{command.__name__}: {param.annotation.__name__} has no "
                                f"{sorted(set(names) - set(fields))}")
            groups[param.name] = (param.annotation, names)
            params += [fields[name] for name in names]
        if set(only) - set(groups):
            raise TypeError(f"{command.__name__}: no bundle parameter {sorted(set(only) - set(groups))}")
        lead = [p for p in params if p.name in first]
        rest = [p for p in params if p.name not in first]
        at = next((i for i, p in enumerate(rest) if p.default is not inspect.Parameter.empty), len(rest))
        params = rest[:at] + lead + rest[at:]

        def call(**values: Any) -> None:
            for name, (bundle, names) in groups.items():
                values[name] = bundle(**{n: values.pop(n) for n in names})
            command(**values)

        # typer names the command and its help after the function, builds the options from
        # inspect.signature (which prefers __signature__) and resolves annotations with
        # get_type_hints (which reads __annotations__): set all of them.
        wrapper: Any = functools.wraps(command)(call)
        wrapper.__signature__ = signature.replace(parameters=params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
        return wrapper

    return decorate


@functools.cache
def _fields(bundle: type) -> dict[str, inspect.Parameter]:
    """A bundle's fields as the keyword-only parameters typer reads: type, option, default."""
    hints = get_type_hints(bundle, include_extras=True)
    return {f.name: inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                      annotation=hints[f.name], default=f.default)
            for f in dataclasses.fields(bundle)}


def xyz(text: str, option: str) -> tuple[int, int, int]:
    """An X,Y,Z option of three integers, e.g. --cseg-block-size 8,8,8; else a usage error."""
    try:
        return triple(int(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{option} takes three integers X,Y,Z, got {text!r}") from None
