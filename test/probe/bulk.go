package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
)

// sink accepts TCP connections on addr; from each it reads to the end and
// answers "received N" with the number of bytes.
func sink(addr string) {
	serveTCP(addr, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "received %d\n", n)
	})
}

// send writes n bytes to a sink at addr, ends its side of the connection
// and prints the sink's answer.
func send(addr, count string) int {
	n, err := strconv.ParseInt(count, 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	c, err := net.Dial(family("tcp", &addr), addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = byte(i)
	}
	for left := n; left > 0; left -= int64(len(buf)) {
		if _, err := c.Write(buf[:min(int64(len(buf)), left)]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fmt.Fprintln(os.Stderr, "no answer:", err)
		return 1
	}
	fmt.Print(line)
	return 0
}
