// Command kube-controller-manager is the upstream Kubernetes controller manager, built from
// the Go module proxy at the same pinned version as kube-apiserver, so members of the
// blueprintd local fleet run Kubernetes' own controllers instead of a simulation.
package main

import (
	"os"
	_ "time/tzdata" // CronJob time zones

	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
