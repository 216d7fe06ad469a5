// Command probe is the end-to-end tests' network tool: a TCP server that
// answers every connection with its own hostname, and a client that reports
// whether an address answered, refused or was unreachable.
//
//	probe listen ADDR:PORT          serve until killed; prints "listening"
//	probe dial ADDR:PORT [TIMEOUT]  prints "ok REPLY", "refused" or "unreachable"
//	                                and exits 0, 3 or 4
//	probe dns ADDR:PORT NAME=IP...  a DNS server (UDP and TCP) answering A queries
//	probe udp-listen ADDR:PORT      prints "listening", then "from SRC: DATA" per datagram
//	probe udp-send SRC DST:PORT MSG sends one datagram from address SRC
//	probe scan TIMEOUT ADDR:PORT... dials each; prints "ADDR ok|refused|unreachable"
//	probe tick ADDR:PORT            serves a counter line every 50ms to each client
//	probe follow ADDR:PORT          prints each line received, with a timestamp
//	probe udp-burst DST:PORT N      sends N numbered datagrams, 2ms apart
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: probe listen|dial ADDR:PORT [TIMEOUT]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "listen":
		listen(os.Args[2])
	case "dns":
		serveDNS(os.Args[2], os.Args[3:])
	case "udp-listen":
		udpListen(os.Args[2])
	case "udp-send":
		if len(os.Args) < 5 {
			os.Exit(2)
		}
		os.Exit(udpSend(os.Args[2], os.Args[3], os.Args[4]))
	case "scan":
		d, err := time.ParseDuration(os.Args[2])
		if err != nil {
			os.Exit(2)
		}
		scan(d, os.Args[3:])
	case "tick":
		tick(os.Args[2])
	case "follow":
		follow(os.Args[2])
	case "udp-burst":
		var n int
		fmt.Sscan(os.Args[3], &n)
		os.Exit(udpBurst(os.Args[2], n))
	case "dial":
		timeout := 2 * time.Second
		if len(os.Args) > 3 {
			d, err := time.ParseDuration(os.Args[3])
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			timeout = d
		}
		os.Exit(dial(os.Args[2], timeout))
	default:
		os.Exit(2)
	}
}

func listen(addr string) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("listening")
	host, _ := os.Hostname()
	for {
		c, err := l.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer c.Close()
			fmt.Fprintf(c, "%s %s\n", host, c.RemoteAddr())
		}()
	}
}

func dial(addr string, timeout time.Duration) int {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if errors.Is(err, syscall.ECONNREFUSED) {
		fmt.Println("refused")
		return 3
	}
	if err != nil {
		fmt.Println("unreachable", err)
		return 4
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	b, _ := io.ReadAll(c)
	fmt.Printf("ok %s", b)
	return 0
}

func udpListen(addr string) {
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("listening")
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			os.Exit(1)
		}
		fmt.Printf("from %s: %s\n", from.(*net.UDPAddr).IP, buf[:n])
	}
}

func udpSend(src, dst, msg string) int {
	d := net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("udp", dst)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func scan(timeout time.Duration, addrs []string) {
	type res struct {
		i int
		s string
	}
	out := make([]string, len(addrs))
	ch := make(chan res)
	for i, a := range addrs {
		go func() {
			c, err := net.DialTimeout("tcp", a, timeout)
			switch {
			case err == nil:
				c.Close()
				ch <- res{i, "ok"}
			case errors.Is(err, syscall.ECONNREFUSED):
				ch <- res{i, "refused"}
			default:
				ch <- res{i, "unreachable"}
			}
		}()
	}
	for range addrs {
		r := <-ch
		out[r.i] = r.s
	}
	for i, a := range addrs {
		fmt.Println(a, out[i])
	}
}

func tick(addr string) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("listening")
	for {
		c, err := l.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer c.Close()
			for i := 0; ; i++ {
				if _, err := fmt.Fprintf(c, "tick %d\n", i); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
}

func follow(addr string) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(4)
	}
	buf := make([]byte, 4096)
	var pending string
	for {
		n, err := c.Read(buf)
		pending += string(buf[:n])
		for {
			i := strings.IndexByte(pending, '\n')
			if i < 0 {
				break
			}
			fmt.Printf("%d %s\n", time.Now().UnixMilli(), pending[:i])
			pending = pending[i+1:]
		}
		if err != nil {
			os.Exit(0)
		}
	}
}

func udpBurst(dst string, n int) int {
	c, err := net.Dial("udp", dst)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	for i := 0; i < n; i++ {
		fmt.Fprintf(c, "datagram %d", i)
		time.Sleep(2 * time.Millisecond)
	}
	return 0
}
