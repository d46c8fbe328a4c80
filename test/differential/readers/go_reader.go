// Reads raw HTTP/1.1 requests (one base64 line each on stdin) with Go's net/http parser and
// prints what a Go server would see: method, decoded path, query and form values, JSON body.
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
)

type reading struct {
	Error   string              `json:"error,omitempty"`
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Query   map[string][]string `json:"query"`
	Form    map[string][]string `json:"form"`
	JSON    interface{}         `json:"json"`
	Headers map[string][]string `json:"headers"`
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		raw, err := base64.StdEncoding.DecodeString(in.Text())
		if err != nil {
			out.Encode(reading{Error: "base64: " + err.Error()})
			continue
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			out.Encode(reading{Error: err.Error()})
			continue
		}
		r := reading{Method: req.Method, Path: req.URL.Path, Headers: map[string][]string{}}
		for name, values := range req.Header {
			r.Headers[strings.ToLower(name)] = values
		}
		r.Query = req.URL.Query()
		body, _ := io.ReadAll(req.Body)
		ct := req.Header.Get("Content-Type")
		if strings.HasPrefix(strings.ToLower(ct), "application/x-www-form-urlencoded") {
			req.Body = io.NopCloser(bytes.NewReader(body))
			req.ParseForm()
			r.Form = req.PostForm
		} else if strings.Contains(strings.ToLower(ct), "json") && len(body) > 0 {
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.UseNumber()
			var v interface{}
			if err := dec.Decode(&v); err != nil {
				r.Error = "json: " + err.Error()
			}
			r.JSON = v
		}
		out.Encode(r)
	}
}
