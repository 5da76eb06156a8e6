"""Running a cluster of broker and controller processes on loopback."""
