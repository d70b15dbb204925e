//go:build tools

// Package tools pins helm's command so `go build helm.sh/helm/v3/cmd/helm` resolves
// against this module's go.sum.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
