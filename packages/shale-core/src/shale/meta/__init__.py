"""What lives in the bucket besides SSTs: the versioned-object protocol, the manifest store,
checkpoints, the sequence tracker, clone locations and segments. Shared by the engine, the
compactor and the garbage collector.
"""
