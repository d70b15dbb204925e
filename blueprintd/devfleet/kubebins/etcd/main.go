// Command etcd is upstream etcd built from the Go module proxy for the blueprintd test bed.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
