"""What the operations share about containers that exist: starting, stopping and waiting for
them (lifecycle.py), their snapshots taken and put back (snapshot.py).  Operations (ops/) are
the commands; this is what several of them do."""
