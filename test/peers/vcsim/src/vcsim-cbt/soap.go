package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"net/http"
	"reflect"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
	vxml "github.com/vmware/govmomi/vim25/xml"
)

const soapEnvNS = "http://schemas.xmlsoap.org/soap/envelope/"

// soapMethod returns the name of the method a SOAP request calls: the local
// name of the first element inside Envelope/Body. Envelope and Body are
// matched by namespace URI, not by prefix, so any prefix a client picks works
// (the same leniency as the stock decoder). "" if the body is not SOAP.
func soapMethod(body []byte) string {
	d := xml.NewDecoder(bytes.NewReader(body))
	depth := 0
	inBody := false
	for {
		tok, err := d.Token()
		if err != nil {
			return ""
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch {
			case depth == 1 && (t.Name.Space != soapEnvNS || t.Name.Local != "Envelope"):
				return ""
			case depth == 2 && t.Name.Space == soapEnvNS && t.Name.Local == "Body":
				inBody = true
			case depth == 2: // soapenv:Header
				if err := d.Skip(); err != nil {
					return ""
				}
				depth--
			case depth == 3 && inBody:
				return t.Name.Local
			}
		case xml.EndElement:
			depth--
		}
	}
}

// taskOf returns the Task moref a *_Task method answered with.
func taskOf(body []byte) (types.ManagedObjectReference, bool) {
	d := xml.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := d.Token()
		if err != nil {
			return types.ManagedObjectReference{}, false
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "returnval" {
			var ref struct {
				Type  string `xml:"type,attr"`
				Value string `xml:",chardata"`
			}
			if d.DecodeElement(&ref, &se) != nil || ref.Type != "Task" {
				return types.ManagedObjectReference{}, false
			}
			return types.ManagedObjectReference{Type: ref.Type, Value: ref.Value}, true
		}
	}
}

// The response writers below produce the same envelope shape as the stock
// handler (simulator.go), which keeps these types unexported. The govmomi xml
// encoder is used because it is the one that knows the vim25 types.

type envelope struct {
	XMLName vxml.Name   `xml:"soapenv:Envelope"`
	Enc     string      `xml:"xmlns:soapenc,attr"`
	Env     string      `xml:"xmlns:soapenv,attr"`
	XSD     string      `xml:"xmlns:xsd,attr"`
	XSI     string      `xml:"xmlns:xsi,attr"`
	Body    interface{} `xml:"soapenv:Body"`
}

type soapFault struct {
	XMLName vxml.Name `xml:"soapenv:Fault"`
	Code    string    `xml:"faultcode"`
	String  string    `xml:"faultstring"`
	Detail  struct {
		Fault *faultDetail
	} `xml:"detail"`
}

type faultDetail struct {
	Fault types.BaseMethodFault
}

// MarshalXML names the detail element <${Type}Fault xsi:type="${Type}"> as vSphere does.
func (d *faultDetail) MarshalXML(e *vxml.Encoder, start vxml.StartElement) error {
	kind := reflect.TypeOf(d.Fault).Elem().Name()
	start.Name.Local = kind + "Fault"
	start.Attr = append(start.Attr,
		vxml.Attr{Name: vxml.Name{Local: "xmlns"}, Value: "urn:vim25"},
		vxml.Attr{Name: vxml.Name{Local: "xsi:type"}, Value: kind})
	return e.EncodeElement(d.Fault, start)
}

// writeSOAP encodes body (a response element or a *soapFault) in an envelope.
func writeSOAP(w http.ResponseWriter, status int, body interface{}) {
	var out bytes.Buffer
	out.WriteString(vxml.Header)
	err := vxml.NewEncoder(&out).Encode(&envelope{
		Enc:  "http://schemas.xmlsoap.org/soap/encoding/",
		Env:  soapEnvNS,
		XSD:  "http://www.w3.org/2001/XMLSchema",
		XSI:  "http://www.w3.org/2001/XMLSchema-instance",
		Body: body,
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if simulator.Trace {
		fmt.Fprintf(simulator.TraceFile, "Response: %s\n", out.String())
	}
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(out.Bytes())
}

// writeFault answers with a vSphere SOAP fault (HTTP 500, as vSphere and the stock simulator do).
func writeFault(w http.ResponseWriter, msg string, fault types.BaseMethodFault) {
	f := &soapFault{Code: "ServerFaultCode", String: msg}
	f.Detail.Fault = &faultDetail{fault}
	writeSOAP(w, http.StatusInternalServerError, struct{ Fault *soapFault }{f})
}

// Response elements of the methods the extension answers itself.

type queryChangedDiskAreasResponse struct {
	XMLName   vxml.Name            `xml:"urn:vim25 QueryChangedDiskAreasResponse"`
	Returnval types.DiskChangeInfo `xml:"returnval"`
}

type exportVMResponse struct {
	XMLName   vxml.Name                    `xml:"urn:vim25 ExportVmResponse"`
	Returnval types.ManagedObjectReference `xml:"returnval"`
}

type exportSnapshotResponse struct {
	XMLName   vxml.Name                    `xml:"urn:vim25 ExportSnapshotResponse"`
	Returnval types.ManagedObjectReference `xml:"returnval"`
}

// voidResponse is the answer of a method without a return value.
type voidResponse struct {
	XMLName vxml.Name
}

func emptyResponse(method string) *voidResponse {
	return &voidResponse{XMLName: vxml.Name{Space: "urn:vim25", Local: method + "Response"}}
}

// methodFault pairs a fault with its faultstring.
type methodFault struct {
	msg   string
	fault types.BaseMethodFault
}

func faultf(fault types.BaseMethodFault, format string, args ...interface{}) *methodFault {
	return &methodFault{fmt.Sprintf(format, args...), fault}
}
