// Command plain is the floor: a Go program that prints a line.
package main

import "fmt"

func main() { fmt.Println("plain") }
