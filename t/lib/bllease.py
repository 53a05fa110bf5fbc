"""bllease: helpers for the Lease tests (t/50-... to t/59-...).

- ttl_close(e, o): the one tolerance the lease tests allow between etcd and
  ballast: a remaining TTL (TimeToLive's `TTL`/`ttl`, never a granted one)
  may differ by exactly one second, when the two reads fall on either
  side of a second boundary.  Anything else must be identical.
- sort_lists(doc): lists etcd returns in no defined order (TimeToLive's
  keys come from a Go map; LeaseLeases is by expiry) sorted, so that the
  comparison is of sets.
- blconc_binary(): the Go program t/lib/go/blconc (clientv3/concurrency),
  built once per source hash like bldiff's Go client.
- ka_stream(client, ids): one LeaseKeepAlive stream carrying a renewal per
  id, half-closed after the last: the answers, in order, or the error.
"""

import os

import bldiff

REMAINING = ("TTL", "ttl")
BLCONC_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "go", "blconc",
                          "main.go")


def ttl_close(e, o):
    """o with every remaining-TTL field that is exactly 1 away from e's set to
    e's; returns (o, number of such adjustments)."""
    n = 0

    def walk(a, b):
        nonlocal n
        if isinstance(a, dict) and isinstance(b, dict):
            out = {}
            for k, v in b.items():
                if k in REMAINING and k in a and isinstance(v, int) \
                        and isinstance(a[k], int) and abs(v - a[k]) == 1:
                    out[k] = a[k]
                    n += 1
                else:
                    out[k] = walk(a.get(k), v) if k in a else v
            return out
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            return [walk(x, y) for x, y in zip(a, b)]
        return b

    return walk(e, o), n


def sort_lists(doc, names=("keys", "leases")):
    """Sort the lists under the given field names, recursively."""
    if isinstance(doc, dict):
        return {k: (sorted((sort_lists(x, names) for x in v), key=repr)
                    if k in names and isinstance(v, list) else sort_lists(v, names))
                for k, v in doc.items()}
    if isinstance(doc, list):
        return [sort_lists(v, names) for v in doc]
    return doc


def blconc_binary():
    """Build t/lib/go/blconc once per source hash into $BALLAST_BUILDDIR/go;
    returns (path, seconds spent building or 0.0)."""
    return bldiff.build_go(os.path.dirname(BLCONC_SRC), "blconc")


def ka_stream(client, ids, timeout=10):
    """Renew each id on ONE LeaseKeepAlive stream (python etcd3's stub),
    half-closing after the last: {"ok": [answers]} or, if the stream ended
    with an error, {"answers": [...], "error_code": ..., "error": ...}."""
    import grpc
    from google.protobuf import json_format
    rpc = bldiff.rpc()
    reqs = iter([rpc.LeaseKeepAliveRequest(ID=i) for i in ids])
    got = []
    try:
        for r in client.leasestub.LeaseKeepAlive(reqs, timeout):
            got.append(bldiff.norm(bldiff._readable(json_format.MessageToDict(
                r, preserving_proto_field_name=True), True)))
    except grpc.RpcError as e:
        return {"answers": got, "error_code": e.code().name, "error": e.details()}
    return {"ok": got}
