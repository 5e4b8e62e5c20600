// CoreDNS with only the plugins the local cluster's Corefile uses (cluster-up.sh), so the
// build skips the cloud-provider plugins (route53, azure, clouddns, ...) of the default set.
// Used by hack/cluster/build-tools.sh; not part of the Python project.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// directives in CoreDNS's own order (its plugin.cfg): a plugin sees the effects of all
// plugins listed after it.
var directives = []string{
	"reload", "bind", "ready", "health", "errors", "log", "cache", "kubernetes", "loop", "forward",
}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
