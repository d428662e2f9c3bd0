"""The library API the command line calls, one module per command family: `convert`,
`convert_chunks`, `verify`, `view`, the step-by-step workflow (`steps`), names and meshes added
to a segmentation (`annotate`, `names`), legacy mesh fragments (`meshes`)."""
