// cfbench: one load generator and one producer for measuring pushbridge and
// Centrifugo side by side on the same Kafka broker (bench/cf/run.sh,
// docs/PERFORMANCE.md "Against Centrifugo").
//
//	cfbench load    -proto pb|cf ...   N WebSocket clients, counting events
//	cfbench produce -format pb|cf ...  events into a topic at a set rate
//
// Both servers get the same events (same keys, same {"s","t"} data), framed
// as each expects; the load generator checks every event once and in order
// per connection the same way for both.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: cfbench load|produce [flags] (-h for each)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "load":
		err = runLoad(os.Args[2:])
	case "produce":
		err = runProduce(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (load or produce)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cfbench:", err)
		os.Exit(1)
	}
}
