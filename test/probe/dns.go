package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

// serveDNS answers A and AAAA queries for the given NAME=IP pairs (a
// name may be given twice, with an IPv4 and an IPv6 address), on UDP and
// TCP, until killed. Other names get NXDOMAIN.
func serveDNS(addr string, pairs []string) {
	names := map[string][]netip.Addr{}
	for _, p := range pairs {
		n, ip, ok := strings.Cut(p, "=")
		a, err := netip.ParseAddr(ip)
		if !ok || err != nil {
			fmt.Fprintln(os.Stderr, "bad NAME=IP:", p)
			os.Exit(2)
		}
		key := strings.TrimSuffix(strings.ToLower(n), ".") + "."
		names[key] = append(names[key], a)
	}
	uc, err := net.ListenPacket("udp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tl, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("listening")
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var n uint16
				if binary.Read(c, binary.BigEndian, &n) != nil {
					return
				}
				q := make([]byte, n)
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				if r := answer(q, names); r != nil {
					_ = binary.Write(c, binary.BigEndian, uint16(len(r)))
					_, _ = c.Write(r)
				}
			}()
		}
	}()
	buf := make([]byte, 1500)
	for {
		n, from, err := uc.ReadFrom(buf)
		if err != nil {
			os.Exit(1)
		}
		if r := answer(buf[:n], names); r != nil {
			_, _ = uc.WriteTo(r, from)
		}
	}
}

func answer(q []byte, names map[string][]netip.Addr) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return nil
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired})
	addrs, ok := names[strings.ToLower(qs[0].Name.String())]
	if !ok {
		b = dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, RCode: dnsmessage.RCodeNameError})
	}
	_ = b.StartQuestions()
	_ = b.Question(qs[0])
	_ = b.StartAnswers()
	for _, a := range addrs {
		rh := dnsmessage.ResourceHeader{Name: qs[0].Name, Class: dnsmessage.ClassINET, TTL: 5}
		switch {
		case a.Is4() && qs[0].Type == dnsmessage.TypeA:
			_ = b.AResource(rh, dnsmessage.AResource{A: a.As4()})
		case a.Is6() && qs[0].Type == dnsmessage.TypeAAAA:
			_ = b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
	}
	r, _ := b.Finish()
	return r
}
