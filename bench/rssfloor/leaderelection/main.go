// Command leaderelection imports client-go's leader election, which the agent uses: it imports
// the typed clientset, whose scheme registers every built-in API group.
package main

import (
	"fmt"

	_ "k8s.io/client-go/tools/leaderelection"
)

func main() { fmt.Println("leaderelection") }
