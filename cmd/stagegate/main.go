// Command stagegate is the stagegate server and command line.
package main

import (
	"context"
	"os"

	"github.com/stagegate/stagegate/internal/cli"
)

func main() { os.Exit(cli.Main(context.Background(), os.Args[1:])) }
