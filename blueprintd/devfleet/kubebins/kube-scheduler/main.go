// Command kube-scheduler is the upstream Kubernetes scheduler, built from the Go module proxy
// at the same pinned version as kube-apiserver: Pods of the local fleet (DRA claims included)
// are placed by Kubernetes' own scheduling code.
package main

import (
	"os"

	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	os.Exit(cli.Run(app.NewSchedulerCommand()))
}
