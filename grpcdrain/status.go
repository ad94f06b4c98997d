package grpcdrain

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ResumeKey is the trailer that End sets: where the client resumes the call
// (an offset, a sequence number, a cursor: the application's own word).
// Its presence is what tells a drained stream from a broken one, whose
// status is codes.Unavailable too.
const ResumeKey = "grpcdrain-resume"

// EndCode is the status code of a call ended by End: Unavailable, the code
// a client already treats as "try again elsewhere".
const EndCode = codes.Unavailable

// endMessage is End's status message, for people; programs read the code
// and the trailer.
const endMessage = "grpcdrain: the server is draining; resume the call on a new one"

// End is what a handler returns once WrapUp is closed: it sets the trailer
// ResumeKey to resume (which may be empty: "start again") and returns the
// status EndCode. ctx is the call's context.
func End(ctx context.Context, resume string) error {
	// SetTrailer fails only outside a server call, and then there is no
	// client to tell: the status alone is all End can give.
	_ = grpc.SetTrailer(ctx, metadata.Pairs(ResumeKey, resume))
	return status.Error(EndCode, endMessage)
}

// Resumption reports whether err, the error of a call whose trailer is
// trailer (grpc.Trailer for a unary call, ClientStream.Trailer for a
// stream), is End's: then the call was ended by a draining server, and
// resume is where to carry on, on a new call.
func Resumption(err error, trailer metadata.MD) (resume string, ok bool) {
	if err == nil || status.Code(err) != EndCode {
		return "", false
	}
	v := trailer.Get(ResumeKey)
	if len(v) != 1 {
		return "", false
	}
	return v[0], true
}
