//go:build tools

// Package tools pins kwok's controller command so `go build sigs.k8s.io/kwok/cmd/kwok`
// resolves against this module's go.sum (kwok plays the kubelets of the local fleet).
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
