// The load generator: N WebSocket clients against pushbridge (native
// protocol, auth.mode none: the token is the user) or Centrifugo (JSON
// protocol, an HS256 token with sub = the user, who is subscribed server-side
// to the personal channel "#<user>"). Connection i is user u(i mod U) and
// binds to 127.0.0.(2 + i mod 8) so that N can pass one address's ephemeral
// ports. Every event carries {"s":<sequence per target>,"t":<µs sent>}: a
// bitmap per connection gives unique, duplicated and out-of-order counts, and
// once the producer has written its sent count to -expect-file, lost =
// expected - unique. Latency = receive time - t, in a 10 µs histogram.
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

const (
	histBucketUs = 10
	histBuckets  = 1000000 // up to 10 s; slower events land in the last bucket
	srcAddrs     = 8
)

type loadOpts struct {
	proto, url, secret, readyFile, expectFile string
	conns, users, inflight                    int
	quiet, timeout, setupTimeout              time.Duration
}

type client struct {
	idx, user        int
	ws               *websocket.Conn
	welcomed         bool
	seen             []uint64
	maxSeen          int64
	unique, dup, ooo int64
	lastErr          string
}

var (
	hist      [histBuckets]atomic.Uint32
	histMax   atomic.Int64
	gFrames   atomic.Int64 // event messages received (unique + duplicated)
	gUnique   atomic.Int64
	gMessages atomic.Int64 // WebSocket messages (Centrifugo may put several events in one)
	gFirstNs  atomic.Int64
	gLastNs   atomic.Int64
	gStop     atomic.Bool
)

func runLoad(args []string) error {
	var o loadOpts
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.StringVar(&o.proto, "proto", "pb", "pb (pushbridge native) or cf (Centrifugo JSON)")
	fs.StringVar(&o.url, "url", "", "ws://HOST:PORT/path (required)")
	fs.StringVar(&o.secret, "secret", "cfbench", "cf: HS256 secret of the connection tokens")
	fs.StringVar(&o.readyFile, "ready-file", "", "written once every connection is logged in")
	fs.StringVar(&o.expectFile, "expect-file", "", "the producer's sent count appears here (required)")
	fs.IntVar(&o.conns, "conns", 1000, "connections")
	fs.IntVar(&o.users, "users", 1000, "connection i is user u(i mod U)")
	fs.IntVar(&o.inflight, "inflight", 256, "handshakes in flight at once")
	fs.DurationVar(&o.quiet, "quiet", 3*time.Second, "stop this long after the last event once the sent count is known")
	fs.DurationVar(&o.timeout, "timeout", 300*time.Second, "give up after this long")
	fs.DurationVar(&o.setupTimeout, "setup-timeout", 180*time.Second, "give up logging in after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.url == "" || o.expectFile == "" || o.conns < 1 || o.users < 1 || o.inflight < 1 {
		return errors.New("load: -url, -expect-file, -conns >= 1, -users >= 1 are needed")
	}
	if o.proto != "pb" && o.proto != "cf" {
		return fmt.Errorf("load: -proto %q: pb or cf", o.proto)
	}
	t0 := time.Now()
	clients := make([]*client, o.conns)
	var wg sync.WaitGroup
	var welcomed atomic.Int64
	sem := make(chan struct{}, o.inflight)
	for i := range clients {
		c := &client{idx: i, user: i % o.users, maxSeen: -1}
		clients[i] = c
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			ok := c.login(&o)
			<-sem
			if ok {
				welcomed.Add(1)
				c.read(&o)
			}
		}()
		if time.Since(t0) > o.setupTimeout {
			break
		}
	}
	for welcomed.Load() < int64(o.conns) && time.Since(t0) < o.setupTimeout {
		time.Sleep(20 * time.Millisecond)
	}
	setupS := time.Since(t0).Seconds()
	if o.readyFile != "" {
		if err := os.WriteFile(o.readyFile, []byte("ready\n"), 0o644); err != nil {
			return err
		}
	}
	sent := waitForEnd(&o, clients, t0)
	gStop.Store(true)
	for _, c := range clients {
		if c != nil && c.ws != nil {
			_ = c.ws.UnderlyingConn().SetReadDeadline(time.Now())
		}
	}
	wg.Wait()
	return report(&o, clients, sent, welcomed.Load(), setupS)
}

// waitForEnd returns the producer's sent count (-1 if it never came) once
// every expected event arrived, or nothing arrived for -quiet after the count
// was known, or -timeout passed.
func waitForEnd(o *loadOpts, clients []*client, t0 time.Time) int64 {
	sent, want := int64(-1), int64(-1)
	lastFrames, lastChange := int64(-1), time.Now()
	for time.Since(t0) < o.timeout {
		time.Sleep(50 * time.Millisecond)
		if f := gFrames.Load(); f != lastFrames {
			lastFrames, lastChange = f, time.Now()
		}
		if sent < 0 {
			b, err := os.ReadFile(o.expectFile)
			if err != nil {
				continue
			}
			n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			if err != nil {
				continue
			}
			sent, want = n, 0
			for _, c := range clients {
				if c != nil && c.welcomed {
					want += expected(sent, c.user, o.users)
				}
			}
			lastChange = time.Now()
		}
		if gUnique.Load() >= want || time.Since(lastChange) > o.quiet {
			break
		}
	}
	return sent
}

// expected: how many of events 0..sent-1 (event i to user i mod U) are user k's.
func expected(sent int64, k, users int) int64 {
	if sent <= int64(k) {
		return 0
	}
	return (sent - int64(k) + int64(users) - 1) / int64(users)
}

func (c *client) login(o *loadOpts) bool {
	src := net.IPv4(127, 0, 0, byte(2+c.idx%srcAddrs))
	d := websocket.Dialer{
		HandshakeTimeout: 30 * time.Second,
		ReadBufferSize:   4096,
		WriteBufferSize:  512,
		NetDial: func(network, addr string) (net.Conn, error) {
			nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}}
			return nd.Dial(network, addr)
		},
	}
	ws, _, err := d.Dial(o.url, nil)
	if err != nil {
		c.lastErr = err.Error()
		return false
	}
	c.ws = ws
	user := "u" + strconv.Itoa(c.user)
	var hello string
	if o.proto == "pb" {
		hello = `{"type":"auth","token":"` + user + `"}`
	} else {
		hello = `{"id":1,"connect":{"token":"` + jwtHS256(o.secret, user) + `","name":"cfbench"}}`
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte(hello)); err != nil {
		c.lastErr = err.Error()
		return false
	}
	_ = ws.UnderlyingConn().SetReadDeadline(time.Now().Add(60 * time.Second))
	_, m, err := ws.ReadMessage()
	_ = ws.UnderlyingConn().SetReadDeadline(time.Time{})
	if err != nil {
		c.lastErr = err.Error()
		return false
	}
	ok := (o.proto == "pb" && bytes.Contains(m, []byte(`"type":"welcome"`))) ||
		(o.proto == "cf" && bytes.Contains(m, []byte(`"id":1,"connect":{`)))
	if !ok {
		c.lastErr = "login answered " + string(m)
		return false
	}
	c.welcomed = true
	return true
}

func (c *client) read(o *loadOpts) {
	var buf bytes.Buffer
	for !gStop.Load() {
		_, r, err := c.ws.NextReader()
		if err != nil {
			if !gStop.Load() {
				c.lastErr = err.Error()
			}
			return
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			c.lastErr = err.Error()
			return
		}
		gMessages.Add(1)
		now := time.Now()
		for _, m := range bytes.Split(buf.Bytes(), []byte{'\n'}) {
			if o.proto == "cf" && len(bytes.TrimSpace(m)) == 2 && m[0] == '{' {
				// Centrifugo's application ping ({}): answer with a pong.
				_ = c.ws.WriteMessage(websocket.TextMessage, []byte("{}"))
				continue
			}
			c.event(m, now)
		}
	}
}

// event counts one message that carries {"s":..,"t":..}; others are ignored.
func (c *client) event(m []byte, now time.Time) {
	i := bytes.Index(m, []byte(`{"s":`))
	if i < 0 {
		return
	}
	s, rest := parseInt(m[i+5:])
	j := bytes.Index(rest, []byte(`"t":`))
	if s < 0 || j < 0 {
		return
	}
	t, _ := parseInt(rest[j+4:])
	gFrames.Add(1)
	ns := now.UnixNano()
	gFirstNs.CompareAndSwap(0, ns)
	gLastNs.Store(ns)
	lat := now.UnixMicro() - t
	if lat < 0 {
		lat = 0
	}
	b := lat / histBucketUs
	if b >= histBuckets {
		b = histBuckets - 1
	}
	hist[b].Add(1)
	for m := histMax.Load(); lat > m && !histMax.CompareAndSwap(m, lat); m = histMax.Load() {
	}
	w := int(s / 64)
	for len(c.seen) <= w {
		c.seen = append(c.seen, 0)
	}
	bit := uint64(1) << (s % 64)
	if c.seen[w]&bit != 0 {
		c.dup++
		return
	}
	c.seen[w] |= bit
	c.unique++
	gUnique.Add(1)
	if s < c.maxSeen {
		c.ooo++
	} else {
		c.maxSeen = s
	}
}

func parseInt(b []byte) (int64, []byte) {
	var n int64
	k := 0
	for k < len(b) && b[k] >= '0' && b[k] <= '9' {
		n = n*10 + int64(b[k]-'0')
		k++
	}
	if k == 0 {
		return -1, b
	}
	return n, b[k:]
}

func jwtHS256(secret, sub string) string {
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	body := enc.EncodeToString([]byte(`{"sub":"` + sub + `"}`))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(head + "." + body))
	return head + "." + body + "." + enc.EncodeToString(mac.Sum(nil))
}

func percentileMs(p float64, total int64) float64 {
	if total == 0 {
		return 0
	}
	rank := int64(p*float64(total) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var acc int64
	for b := range hist {
		acc += int64(hist[b].Load())
		if acc >= rank {
			return float64((b+1)*histBucketUs) / 1000
		}
	}
	return float64(histBuckets*histBucketUs) / 1000
}

func report(o *loadOpts, clients []*client, sent, welcomed int64, setupS float64) error {
	var want, unique, dup, ooo int64
	errs := map[string]int{}
	for _, c := range clients {
		if c == nil {
			continue
		}
		if c.welcomed && sent >= 0 {
			want += expected(sent, c.user, o.users)
		}
		unique += c.unique
		dup += c.dup
		ooo += c.ooo
		if c.lastErr != "" && len(errs) < 5 {
			errs[c.lastErr]++
		}
	}
	frames := gFrames.Load()
	span := float64(gLastNs.Load()-gFirstNs.Load()) / 1e9
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
	out := map[string]any{
		"proto": o.proto, "conns": o.conns, "welcomed": welcomed, "setup_s": setupS,
		"sent": sent, "expected": want, "frames": frames, "unique": unique,
		"lost": want - unique, "dup": dup, "ooo": ooo, "ws_messages": gMessages.Load(),
		"frames_per_s": 0.0, "p50_ms": percentileMs(0.50, frames),
		"p99_ms": percentileMs(0.99, frames), "max_ms": float64(histMax.Load()) / 1000,
		"loadgen_cpu_s": cpu, "errors": errs,
	}
	if span > 0 {
		out["frames_per_s"] = float64(frames) / span
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	return nil
}
