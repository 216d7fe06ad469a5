package control

import (
	"encoding/json"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// SocketVerb asks the supervisor for a socket created in a node's network
// namespace and passed back over the control connection (SCM_RIGHTS): a
// socket belongs for life to the namespace it was created in, so the
// caller can then bind, listen and connect it as that node, from its own
// network namespace. Package nstest dials and listens from inside nodes
// this way.
const SocketVerb = "socket"

// Socket asks the supervisor at path for socket(family, typ, proto)
// created in node's network namespace, and returns it (close-on-exec,
// blocking). family is AF_INET or AF_INET6, typ SOCK_STREAM or SOCK_DGRAM.
func Socket(path, node string, family, typ, proto int) (*os.File, error) {
	call := SocketCall{Node: node, Family: family, Type: typ, Proto: proto}
	if err := call.Check(); err != nil {
		return nil, err
	}
	c, err := Dial(path, Request{Verb: SocketVerb, Socket: &call})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := c.c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, &Error{Kind: ErrRunGone, Msg: fmt.Sprintf("socket in node %s: no answer from the run: %v", node, err)}
	}
	var fds []int
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, m := range msgs {
			if got, err := unix.ParseUnixRights(&m); err == nil {
				fds = append(fds, got...)
			}
		}
	}
	var r Response
	if err := json.Unmarshal(buf[:n], &r); err != nil || r.Error != "" || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		switch {
		case err != nil:
			return nil, fmt.Errorf("socket in node %s: bad answer from the run: %w", node, err)
		case r.Error != "":
			return nil, r.Err()
		}
		return nil, fmt.Errorf("socket in node %s: the run sent %d sockets, not one", node, len(fds))
	}
	unix.CloseOnExec(fds[0])
	return os.NewFile(uintptr(fds[0]), "socket in node "+node), nil
}

// ReplyFile sends a response with f attached (SCM_RIGHTS), in one message.
func (p *Peer) ReplyFile(r Response, f *os.File) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, _, err = p.c.WriteMsgUnix(append(b, '\n'), unix.UnixRights(int(f.Fd())), nil)
	return err
}
