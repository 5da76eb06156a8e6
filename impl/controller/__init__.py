"""The controller quorum: Raft (raft.py, raft_storage.py), the metadata records and
image (metadata.py), and the active controller's decisions (controller.py)."""
