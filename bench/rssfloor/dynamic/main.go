// Command dynamic imports what an agent without client-go's typed clientset would need: the
// dynamic client, informers' cache and the core/v1 types.
package main

import (
	"fmt"

	_ "k8s.io/api/core/v1"
	_ "k8s.io/client-go/dynamic"
	_ "k8s.io/client-go/tools/cache"
)

func main() { fmt.Println("dynamic") }
