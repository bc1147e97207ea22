// The producer: event i goes to user u(i mod U) (or the one -key), with data
// {"s":<sequence per target>,"t":<µs CLOCK_REALTIME when sent>}, at -rate
// events/s for -duration seconds, keyed by the user so that a user's events
// stay in one partition. -format pb writes pushbridge's envelope; -format cf
// a Centrifugo "publish" request for the user's personal channel ("#u5"),
// with the method in the centrifugo-method header (its consumer then skips
// one JSON decode). Prints {"sent":N,"seconds":S}.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func runProduce(args []string) error {
	fs := flag.NewFlagSet("produce", flag.ContinueOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka bootstrap server")
	topic := fs.String("topic", "", "topic (required)")
	format := fs.String("format", "pb", "pb (pushbridge envelope) or cf (Centrifugo publish)")
	users := fs.Int("users", 1, "keys u0..u(U-1), round-robin")
	key := fs.String("key", "", "one fixed user instead")
	rate := fs.Int("rate", 1000, "events per second")
	duration := fs.Float64("duration", 10, "seconds of sending")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *topic == "" || *users < 1 || *rate < 1 || *duration <= 0 {
		return errors.New("produce: -topic, -users >= 1, -rate >= 1 and -duration > 0 are needed")
	}
	if *format != "pb" && *format != "cf" {
		return fmt.Errorf("produce: -format %q: pb or cf", *format)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(*brokers), kgo.ProducerLinger(time.Millisecond),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.DefaultProduceTopic(*topic))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*duration+60)*time.Second)
	defer cancel()
	// Connect and learn the topic's leader before the clock starts.
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("produce: broker %s: %w", *brokers, err)
	}
	cl.ForceMetadataRefresh()

	var failed atomic.Int64
	var firstErr atomic.Value
	done := func(_ *kgo.Record, err error) {
		if err != nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
		}
	}
	total := int64(float64(*rate) * *duration)
	start := time.Now()
	var i int64
	for i < total {
		due := int64(time.Since(start).Seconds() * float64(*rate))
		if due > total {
			due = total
		}
		for ; i < due; i++ {
			cl.Produce(ctx, event(i, *format, *users, *key), done)
		}
		time.Sleep(time.Millisecond)
	}
	sendS := time.Since(start).Seconds()
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("produce: flush: %w", err)
	}
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("produce: %d of %d events failed: %v", n, total, firstErr.Load())
	}
	out, _ := json.Marshal(map[string]any{"sent": total, "seconds": sendS, "format": *format})
	fmt.Println(string(out))
	return nil
}

func event(i int64, format string, users int, key string) *kgo.Record {
	user, seq := key, i
	if key == "" {
		user, seq = "u"+strconv.FormatInt(i%int64(users), 10), i/int64(users)
	}
	t := time.Now().UnixMicro()
	data := `{"s":` + strconv.FormatInt(seq, 10) + `,"t":` + strconv.FormatInt(t, 10) + `}`
	r := &kgo.Record{Key: []byte(user)}
	if format == "pb" {
		r.Value = []byte(`{"event":"bench","data":` + data + `}`)
	} else {
		r.Value = []byte(`{"channel":"#` + user + `","data":` + data + `}`)
		r.Headers = []kgo.RecordHeader{{Key: "centrifugo-method", Value: []byte("publish")}}
	}
	return r
}
