// Command hello is built by the BuildBinary test.
package main

import "fmt"

func main() { fmt.Println("hello from BuildBinary") }
