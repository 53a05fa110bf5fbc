// bldiff: run KV operations through the Go clientv3 of etcd 3.4 and print
// every answer as one JSON line, so that t/lib/bldiff.py can send the same
// operations to a real etcd and to ballast and compare the answers.
//
// Built by t/lib/bldiff.py in GOPATH mode against Debian's
// golang-etcd-server-dev (GO111MODULE=off GOPATH=/usr/share/gocode).
//
// Usage: bldiff -endpoint 127.0.0.1:2379 < ops
//
// Standard input is a stream of JSON values, each one operation or a list
// of operations; for every operation one line is printed (and flushed):
//
//	{"ok": <response, protobuf JSON with the proto field names>}
//	{"error_code": "InvalidArgument", "error": "etcdserver: ...",
//	 "client_error": "<what clientv3 returned>"}
//
// error_code and error are the gRPC status exactly as the server sent it
// (caught by an interceptor, below clientv3's own message mapping).
//
// Operations (byte fields are base64, as encoding/json does for []byte):
//
//	{"op":"put","key","value","lease","prev_kv","ignore_value","ignore_lease"}
//	{"op":"get","key", "range_end"|"prefix"|"from_key", "limit","revision",
//	 "sort_order":"NONE|ASCEND|DESCEND","sort_target":"KEY|VERSION|CREATE|MOD|VALUE",
//	 "serializable","keys_only","count_only","min_mod_revision",
//	 "max_mod_revision","min_create_revision","max_create_revision"}
//	{"op":"delete","key", "range_end"|"prefix"|"from_key", "prev_kv"}
//	{"op":"txn","compare":[{"target":"VERSION|CREATE|MOD|VALUE|LEASE",
//	 "result":"=|!=|>|<","key","range_end"|"prefix","n":<int>,"v":<bytes>}],
//	 "success":[ops],"failure":[ops]}          (ops may be txns: nesting)
//	{"op":"compact","revision","physical"}
//	{"op":"lease_grant","id","ttl"}            (raw LeaseGrant: the ID is ours)
//	{"op":"lease_revoke","id"}
//
// No network but the endpoint: the program dials only -endpoint.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/gogo/protobuf/jsonpb"
	"github.com/golang/protobuf/proto"
	"go.etcd.io/etcd/clientv3"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

type Cmp struct {
	Target   string `json:"target"`
	Result   string `json:"result"`
	Key      []byte `json:"key"`
	RangeEnd []byte `json:"range_end"`
	Prefix   bool   `json:"prefix"`
	N        int64  `json:"n"`
	V        []byte `json:"v"`
}

type Op struct {
	Op                string `json:"op"`
	Key               []byte `json:"key"`
	RangeEnd          []byte `json:"range_end"`
	Prefix            bool   `json:"prefix"`
	FromKey           bool   `json:"from_key"`
	Value             []byte `json:"value"`
	Lease             int64  `json:"lease"`
	PrevKV            bool   `json:"prev_kv"`
	IgnoreValue       bool   `json:"ignore_value"`
	IgnoreLease       bool   `json:"ignore_lease"`
	Limit             int64  `json:"limit"`
	Revision          int64  `json:"revision"`
	SortOrder         string `json:"sort_order"`
	SortTarget        string `json:"sort_target"`
	Serializable      bool   `json:"serializable"`
	KeysOnly          bool   `json:"keys_only"`
	CountOnly         bool   `json:"count_only"`
	MinModRevision    int64  `json:"min_mod_revision"`
	MaxModRevision    int64  `json:"max_mod_revision"`
	MinCreateRevision int64  `json:"min_create_revision"`
	MaxCreateRevision int64  `json:"max_create_revision"`
	Compare           []Cmp  `json:"compare"`
	Success           []Op   `json:"success"`
	Failure           []Op   `json:"failure"`
	Physical          bool   `json:"physical"`
	ID                int64  `json:"id"`
	TTL               int64  `json:"ttl"`
}

// the raw status of the last failed unary call, below clientv3's mapping
var lastErr error

func capture(ctx context.Context, method string, req, reply interface{},
	cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	lastErr = err
	return err
}

// badInput is an operation this program cannot express (a test bug)
type badInput struct{ msg string }

func (e badInput) Error() string { return e.msg }

func rangeOpts(o *Op) []clientv3.OpOption {
	var opts []clientv3.OpOption
	n := 0
	if len(o.RangeEnd) > 0 {
		opts = append(opts, clientv3.WithRange(string(o.RangeEnd)))
		n++
	}
	if o.Prefix {
		opts = append(opts, clientv3.WithPrefix())
		n++
	}
	if o.FromKey {
		opts = append(opts, clientv3.WithFromKey())
		n++
	}
	if n > 1 {
		panic(badInput{"range_end, prefix and from_key are exclusive"})
	}
	return opts
}

var sortTargets = map[string]clientv3.SortTarget{
	"": clientv3.SortByKey, "KEY": clientv3.SortByKey,
	"VERSION": clientv3.SortByVersion, "CREATE": clientv3.SortByCreateRevision,
	"MOD": clientv3.SortByModRevision, "VALUE": clientv3.SortByValue,
}

var sortOrders = map[string]clientv3.SortOrder{
	"": clientv3.SortNone, "NONE": clientv3.SortNone,
	"ASCEND": clientv3.SortAscend, "DESCEND": clientv3.SortDescend,
}

func toOp(o *Op) clientv3.Op {
	switch o.Op {
	case "get":
		opts := rangeOpts(o)
		if o.Limit != 0 {
			opts = append(opts, clientv3.WithLimit(o.Limit))
		}
		if o.Revision != 0 {
			opts = append(opts, clientv3.WithRev(o.Revision))
		}
		if o.SortOrder != "" || o.SortTarget != "" {
			t, ok1 := sortTargets[o.SortTarget]
			s, ok2 := sortOrders[o.SortOrder]
			if !ok1 || !ok2 {
				panic(badInput{"bad sort " + o.SortTarget + "/" + o.SortOrder})
			}
			opts = append(opts, clientv3.WithSort(t, s))
		}
		if o.Serializable {
			opts = append(opts, clientv3.WithSerializable())
		}
		if o.KeysOnly {
			opts = append(opts, clientv3.WithKeysOnly())
		}
		if o.CountOnly {
			opts = append(opts, clientv3.WithCountOnly())
		}
		if o.MinModRevision != 0 {
			opts = append(opts, clientv3.WithMinModRev(o.MinModRevision))
		}
		if o.MaxModRevision != 0 {
			opts = append(opts, clientv3.WithMaxModRev(o.MaxModRevision))
		}
		if o.MinCreateRevision != 0 {
			opts = append(opts, clientv3.WithMinCreateRev(o.MinCreateRevision))
		}
		if o.MaxCreateRevision != 0 {
			opts = append(opts, clientv3.WithMaxCreateRev(o.MaxCreateRevision))
		}
		return clientv3.OpGet(string(o.Key), opts...)
	case "put":
		var opts []clientv3.OpOption
		if o.Lease != 0 {
			opts = append(opts, clientv3.WithLease(clientv3.LeaseID(o.Lease)))
		}
		if o.PrevKV {
			opts = append(opts, clientv3.WithPrevKV())
		}
		if o.IgnoreValue {
			opts = append(opts, clientv3.WithIgnoreValue())
		}
		if o.IgnoreLease {
			opts = append(opts, clientv3.WithIgnoreLease())
		}
		return clientv3.OpPut(string(o.Key), string(o.Value), opts...)
	case "delete":
		opts := rangeOpts(o)
		if o.PrevKV {
			opts = append(opts, clientv3.WithPrevKV())
		}
		return clientv3.OpDelete(string(o.Key), opts...)
	case "txn":
		return clientv3.OpTxn(toCmps(o.Compare), toOps(o.Success), toOps(o.Failure))
	}
	panic(badInput{"unknown op " + o.Op})
}

func toOps(os []Op) []clientv3.Op {
	var r []clientv3.Op
	for i := range os {
		r = append(r, toOp(&os[i]))
	}
	return r
}

func toCmps(cs []Cmp) []clientv3.Cmp {
	var r []clientv3.Cmp
	for _, c := range cs {
		key := string(c.Key)
		var cmp clientv3.Cmp
		switch c.Target {
		case "VERSION":
			cmp = clientv3.Compare(clientv3.Version(key), c.Result, c.N)
		case "CREATE":
			cmp = clientv3.Compare(clientv3.CreateRevision(key), c.Result, c.N)
		case "MOD":
			cmp = clientv3.Compare(clientv3.ModRevision(key), c.Result, c.N)
		case "LEASE":
			cmp = clientv3.Compare(clientv3.LeaseValue(key), c.Result, clientv3.LeaseID(c.N))
		case "VALUE":
			cmp = clientv3.Compare(clientv3.Value(key), c.Result, string(c.V))
		default:
			panic(badInput{"unknown compare target " + c.Target})
		}
		if len(c.RangeEnd) > 0 {
			cmp = cmp.WithRange(string(c.RangeEnd))
		}
		if c.Prefix {
			cmp = cmp.WithPrefix()
		}
		r = append(r, cmp)
	}
	return r
}

var marshaler = jsonpb.Marshaler{OrigName: true, EmitDefaults: true}

func jsonOf(m proto.Message) json.RawMessage {
	s, err := marshaler.MarshalToString(m)
	if err != nil {
		panic(badInput{"marshal: " + err.Error()})
	}
	return json.RawMessage(s)
}

func run(cli *clientv3.Client, o *Op, timeout time.Duration) (res map[string]interface{}) {
	defer func() {
		if p := recover(); p != nil {
			if b, ok := p.(badInput); ok {
				res = map[string]interface{}{"bad_input": b.msg}
				return
			}
			// a clientv3 panic on what we asked (e.g. an option it refuses)
			res = map[string]interface{}{"client_panic": fmt.Sprint(p)}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	lastErr = nil
	var msg proto.Message
	var err error
	switch o.Op {
	case "get", "put", "delete":
		var r clientv3.OpResponse
		r, err = cli.Do(ctx, toOp(o))
		if err == nil {
			switch o.Op {
			case "get":
				msg = (*pb.RangeResponse)(r.Get())
			case "put":
				msg = (*pb.PutResponse)(r.Put())
			default:
				msg = (*pb.DeleteRangeResponse)(r.Del())
			}
		}
	case "txn":
		var r *clientv3.TxnResponse
		r, err = cli.Txn(ctx).If(toCmps(o.Compare)...).Then(toOps(o.Success)...).
			Else(toOps(o.Failure)...).Commit()
		if err == nil {
			msg = (*pb.TxnResponse)(r)
		}
	case "compact":
		var opts []clientv3.CompactOption
		if o.Physical {
			opts = append(opts, clientv3.WithCompactPhysical())
		}
		var r *clientv3.CompactResponse
		r, err = cli.Compact(ctx, o.Revision, opts...)
		if err == nil {
			msg = (*pb.CompactionResponse)(r)
		}
	case "lease_grant":
		msg, err = pb.NewLeaseClient(cli.ActiveConnection()).LeaseGrant(ctx,
			&pb.LeaseGrantRequest{ID: o.ID, TTL: o.TTL})
	case "lease_revoke":
		var r *clientv3.LeaseRevokeResponse
		r, err = cli.Revoke(ctx, clientv3.LeaseID(o.ID))
		if err == nil {
			msg = (*pb.LeaseRevokeResponse)(r)
		}
	default:
		panic(badInput{"unknown op " + o.Op})
	}
	if err != nil {
		raw := lastErr
		if raw == nil {
			raw = err
		}
		res = map[string]interface{}{"client_error": err.Error()}
		if st, ok := status.FromError(raw); ok {
			res["error_code"] = st.Code().String()
			res["error"] = st.Message()
		} else {
			res["error_code"] = "(not a gRPC status)"
			res["error"] = raw.Error()
		}
		return res
	}
	return map[string]interface{}{"ok": jsonOf(msg)}
}

func main() {
	endpoint := flag.String("endpoint", "127.0.0.1:2379", "host:port of the server")
	timeout := flag.Duration("timeout", 5*time.Second, "timeout of one operation")
	flag.Parse()

	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{*endpoint},
		DialTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(capture)},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bldiff: connect:", err)
		os.Exit(2)
	}
	defer cli.Close()

	in := json.NewDecoder(bufio.NewReader(os.Stdin))
	out := bufio.NewWriter(os.Stdout)
	emit := func(v interface{}) {
		b, err := json.Marshal(v)
		if err != nil {
			b = []byte(fmt.Sprintf(`{"bad_input":%q}`, err.Error()))
		}
		out.Write(b)
		out.WriteByte('\n')
		out.Flush()
	}
	for {
		var raw json.RawMessage
		if err := in.Decode(&raw); err == io.EOF {
			return
		} else if err != nil {
			emit(map[string]interface{}{"bad_input": "decode: " + err.Error()})
			return
		}
		var ops []Op
		if strings.HasPrefix(strings.TrimSpace(string(raw)), "[") {
			err = json.Unmarshal(raw, &ops)
		} else {
			var o Op
			err = json.Unmarshal(raw, &o)
			ops = []Op{o}
		}
		if err != nil {
			emit(map[string]interface{}{"bad_input": "decode: " + err.Error()})
			continue
		}
		for i := range ops {
			emit(run(cli, &ops[i], *timeout))
		}
	}
}
