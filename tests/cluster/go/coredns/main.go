// CoreDNS with only the plugins the e2e cluster's Corefile uses
// (tests/cluster/manifests/coredns.yaml). The stock build links every plugin, the
// cloud providers' SDKs included, and takes minutes longer to compile on two cores;
// CoreDNS documents this way of choosing plugins: a main of one's own that imports
// coremain and the plugins wanted. The directive order stays CoreDNS's own.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func main() {
	coremain.Run()
}
