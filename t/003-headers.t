# smart-imaging: response headers (docs/responses.md, "What it does" and
# smart_imaging_ttl): Vary: Accept on every candidate response (also when
# the original is served, and on 304), the converted response's own weak
# ETag, no byte ranges of a converted response, Cache-Control from
# smart_imaging_ttl only when the response has none, other headers passed
# through, and where the module is on or off.  Needs the module:
#
#   TEST_NGINX_BINARY=/path/to/nginx \
#   TEST_NGINX_LOAD_MODULES=target/debug/libngx_http_smart_imaging_module.so \
#       prove -I t/lib t/003-headers.t

use Test::Nginx::Socket;
# t/lib after Test::Nginx::Socket: prove -I t/lib gives ours, -I REAL/lib the
# real one.
use FindBin ();
use lib "$FindBin::Bin/lib";
use SmartImaging ();
use POSIX ();
use Time::Local ();

# The real Test::Nginx does not set it (lua-nginx-module's t/*.t do this too).
$ENV{TEST_NGINX_HTML_DIR} ||= html_dir();

my %Samples = SmartImaging::default_samples();

our ($Jpeg, $Png) =
    @{ SmartImaging::require_samples(\%Samples) }{'sample.jpg', 'sample.png'};
our $Noise = SmartImaging::noise_png(256, 256, 5);   # WebP is not smaller

# Files get a fixed mtime, so their ETag and Last-Modified are known here.
# The real Test::Nginx applies it with "TZ=GMT touch -t"; make ours (which
# uses mktime) read it as GMT too.
$ENV{TZ} = 'GMT';
POSIX::tzset();
our $MtimeStamp = '202301020304.05';
our $Mtime = Time::Local::timegm(5, 4, 3, 2, 0, 2023);
our $LastModified = 'Mon, 02 Jan 2023 03:04:05 GMT';

# nginx's static ETag: "<mtime hex>-<size hex>".
sub etag_of { sprintf '"%x-%x"', $Mtime, length $_[0] }
our $JpegETag     = etag_of($Jpeg);
our $PngETag      = etag_of($Png);
our $NoiseETag    = etag_of($Noise);
# The derivative's ETag: the original's, plus the variant served
# (format, quality, size: see $smart_imaging_variant).
our $JpegWebpETag = sprintf 'W/"%x-%x-webp-q100-src"', $Mtime, length $Jpeg;
our $PngWebpETag  = sprintf 'W/"%x-%x-webp-q100-src"', $Mtime, length $Png;

our @Files = (
    ['sample.jpg',     $Jpeg,  $MtimeStamp],
    ['sample.png',     $Png,   $MtimeStamp],
    ['noise.png',      $Noise, $MtimeStamp],
    ['raw/sample.jpg', $Jpeg,  $MtimeStamp],
    ['hello.txt',      "hello, world\n", $MtimeStamp],
);

repeat_each(2);
# Blocks have a "location /" of their own (static_location() among them): no
# default one from the harness.
no_root_location();
no_long_string();

# For "--- http_config eval" sections that add servers: "$::Types . ...".
our $Types = SmartImaging::types_config();

SmartImaging::add_block_defaults(SmartImaging::static_defaults(),
                                 user_files => \@Files);

SmartImaging::add_webp_check(\%Samples);

plan 'no_plan';

run_tests();

__DATA__

=== TEST 1: Vary: Accept on a converted JPEG
--- more_headers
Accept: image/webp,*/*
--- request
GET /sample.jpg
--- response_headers
Content-Type: image/webp
Vary: Accept
--- webp: sample.jpg
--- no_error_log
[error]



=== TEST 2: Vary: Accept on the original JPEG to a client without WebP
--- more_headers
Accept: image/apng,image/*,*/*;q=0.8
--- request
GET /sample.jpg
--- response_headers
Content-Type: image/jpeg
Vary: Accept
--- response_body eval
$::Jpeg
--- no_error_log
[error]



=== TEST 3: Vary: Accept on a 304 (If-None-Match with the original ETag, no WebP)
--- more_headers eval
"If-None-Match: $::JpegETag\n"
--- request
GET /sample.jpg
--- error_code: 304
--- response_headers eval
"ETag: $::JpegETag\nVary: Accept\n"
--- response_body eval
""
--- no_error_log
[error]



=== TEST 4: Vary: Accept on a 304 of a PNG (If-Modified-Since, WebP client)
--- more_headers eval
"Accept: image/webp\nIf-Modified-Since: $::LastModified\n"
--- request
GET /sample.png
--- error_code: 304
--- response_headers
Vary: Accept
!Content-Type
--- response_body eval
""
--- no_error_log
[error]



=== TEST 5: Vary: Accept on a proxied 304 (the origin answers If-None-Match)
--- http_config eval
$::Types . <<'_EOC_'
    server {
        listen unix:$TEST_NGINX_HTML_DIR/origin.sock;
        root $TEST_NGINX_HTML_DIR;
    }
_EOC_
--- config
    location /shop/ {
        smart_imaging on;
        proxy_pass http://unix:$TEST_NGINX_HTML_DIR/origin.sock:/;
    }
--- more_headers eval
"If-None-Match: $::JpegETag\n"
--- request
GET /shop/sample.jpg
--- error_code: 304
--- response_headers eval
"ETag: $::JpegETag\nVary: Accept\n"



=== TEST 6: no Vary on text/plain in a smart_imaging location
--- more_headers
Accept: image/webp,*/*
--- request
GET /hello.txt
--- response_headers
Content-Type: text/plain
!Vary
--- response_body
hello, world



=== TEST 7: no Vary with ?bfc=off, and the response is what nginx sends without the module
--- more_headers
Accept: image/webp,*/*
--- request
GET /sample.jpg?bfc=off
--- response_headers eval
"Content-Type: image/jpeg\nContent-Length: 53962\nETag: $::JpegETag\nAccept-Ranges: bytes\n!Vary\n"
--- response_body eval
$::Jpeg



=== TEST 8: an existing Vary: Accept (add_header) is not duplicated
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        add_header Vary Accept;
    }
--- more_headers
Accept: image/webp
--- request
GET /sample.png
--- response_headers
Content-Type: image/webp
Vary: Accept
--- webp: sample.png



=== TEST 9: Vary: Accept is added next to another Vary (Accept-Encoding)
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        add_header Vary Accept-Encoding;
    }
--- more_headers
Accept: image/webp
--- request
GET /sample.png
--- response_headers
Content-Type: image/webp
--- raw_response_headers_like: \r\nVary: Accept-Encoding\r\n(?:.*\r\n)*Vary: Accept\r\n
--- webp: sample.png



=== TEST 10: converted response: weak ETag W/"<etag>-<variant>", Last-Modified kept, no Accept-Ranges
--- more_headers
Accept: image/webp
--- request
GET /sample.jpg
--- response_headers_like eval
SmartImaging::headers_like(
"Content-Type: image/webp\nETag: $::JpegWebpETag\nLast-Modified: $::LastModified\n!Accept-Ranges\n!Transfer-Encoding\n",
"Content-Length: ^\\d+\$\n")
--- webp: sample.jpg



=== TEST 11: original response (no WebP): strong ETag and Accept-Ranges kept
--- request
GET /sample.png
--- response_headers eval
"Content-Type: image/png\nETag: $::PngETag\nLast-Modified: $::LastModified\nAccept-Ranges: bytes\nVary: Accept\n"
--- response_body eval
$::Png



=== TEST 12: not smaller (original to a WebP client): ETag unchanged, no Accept-Ranges (buffered)
--- more_headers
Accept: image/webp
--- request
GET /noise.png
--- response_headers eval
"Content-Type: image/png\nETag: $::NoiseETag\nVary: Accept\n!Accept-Ranges\n"
--- response_body eval
$::Noise



=== TEST 13: Range with WebP Accept: 200 with the whole WebP, not a 206
--- more_headers
Accept: image/webp
Range: bytes=0-99
--- request
GET /sample.jpg
--- error_code: 200
--- response_headers
Content-Type: image/webp
Vary: Accept
!Content-Range
!Accept-Ranges
--- webp: sample.jpg



=== TEST 14: Range with WebP Accept, not smaller: 200 with the whole original
--- more_headers
Accept: image/webp
Range: bytes=0-99
--- request
GET /noise.png
--- error_code: 200
--- response_headers
Content-Type: image/png
Content-Length: 8486
!Content-Range
--- response_body eval
$::Noise



=== TEST 15: Range without WebP: 206 of the original (with Vary: Accept)
--- request
GET /sample.jpg
--- more_headers
Range: bytes=0-99
--- error_code: 206
--- response_headers
Content-Type: image/jpeg
Content-Range: bytes 0-99/53962
Content-Length: 100
Vary: Accept
--- response_body eval
substr($::Jpeg, 0, 100)



=== TEST 16: Range (suffix) without WebP: 206 of the original PNG
--- more_headers
Accept: image/png,image/*;q=0.8
Range: bytes=-10
--- request
GET /sample.png
--- error_code: 206
--- response_headers
Content-Range: bytes 58043-58052/58053
--- response_body eval
substr($::Png, -10)



=== TEST 17: proxied Range with WebP Accept: the origin's 206 of the original passes, with Vary
# The client's Range reaches the origin, which answers 206 before any filter
# runs. That partial response is a range of the original, labelled and
# validated as the original (Content-Type image/jpeg, the original's ETag):
# consistent, never a range of the WebP. It must say Vary: Accept like the
# 200 does, so no cache mixes representations.
--- http_config eval
$::Types . <<'_EOC_'
    server {
        listen unix:$TEST_NGINX_HTML_DIR/origin.sock;
        root $TEST_NGINX_HTML_DIR;
    }
_EOC_
--- config
    location /shop/ {
        smart_imaging on;
        proxy_pass http://unix:$TEST_NGINX_HTML_DIR/origin.sock:/;
    }
--- more_headers
Accept: image/webp
Range: bytes=0-99
--- request
GET /shop/sample.jpg
--- error_code: 206
--- response_headers
Content-Type: image/jpeg
Vary: Accept
Content-Range: bytes 0-99/53962
--- response_body eval
substr($::Jpeg, 0, 100)



=== TEST 18: a non-200 image (error_page 404 with a JPEG) is not touched
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_ttl 1h;
        error_page 404 /sample.jpg;
    }
--- more_headers
Accept: image/webp
--- request
GET /missing.jpg
--- error_code: 404
--- response_headers
Content-Type: image/jpeg
!Vary
!Cache-Control
--- response_body eval
$::Jpeg



=== TEST 19: HEAD with WebP Accept: the headers of GET's WebP (its type, length and ETag), no body
--- log_level: info
--- more_headers
Accept: image/webp
--- request
HEAD /sample.jpg
--- response_headers_like eval
SmartImaging::headers_like("Content-Type: image/webp\nETag: $::JpegWebpETag\nVary: Accept\n!Accept-Ranges\n",
                           "Content-Length: [1-9][0-9]*\n")
--- response_body eval
""
--- error_log
converted to webp
--- no_error_log
[error]



=== TEST 20: smart_imaging_ttl 1h adds Cache-Control: max-age=3600 (converted and original)
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_ttl 1h;
    }
--- more_headers eval
["Accept: image/webp", "Accept: */*"]
--- request eval
["GET /sample.jpg", "GET /sample.jpg"]
--- response_headers eval
["Content-Type: image/webp\nCache-Control: max-age=3600\n!Expires\n",
 "Content-Type: image/jpeg\nCache-Control: max-age=3600\n!Expires\n"]
--- webp eval
["sample.jpg", undef]



=== TEST 21: smart_imaging_ttl on HEAD; not on text/plain, nor with bfc=off
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_ttl 1h;
    }
--- more_headers
Accept: image/webp
--- request eval
["HEAD /sample.png", "GET /hello.txt", "GET /sample.png?bfc=off"]
--- response_headers eval
["Content-Type: image/webp\nCache-Control: max-age=3600\n",
 "Content-Type: text/plain\n!Cache-Control\n",
 "Content-Type: image/png\n!Cache-Control\n"]



=== TEST 22: smart_imaging_ttl with "expires 10m" in the same location: expires wins, no duplicate
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_ttl 1h;
        expires 10m;
    }
--- more_headers eval
["Accept: image/webp", ""]
--- request eval
["GET /sample.jpg", "GET /sample.jpg"]
--- response_headers eval
["Content-Type: image/webp\nCache-Control: max-age=600\n",
 "Content-Type: image/jpeg\nCache-Control: max-age=600\n"]
--- raw_response_headers_like eval
["\r\nExpires: [^\r]+ GMT\r\n", "\r\nExpires: [^\r]+ GMT\r\n"]
--- webp eval
["sample.jpg", undef]



=== TEST 23: smart_imaging_ttl with add_header Cache-Control in the same location: theirs wins
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_ttl 1h;
        add_header Cache-Control "public, max-age=60";
    }
--- more_headers eval
["Accept: image/webp", ""]
--- request eval
["GET /sample.png", "GET /sample.png"]
--- response_headers eval
["Content-Type: image/webp\nCache-Control: public, max-age=60\n!Expires\n",
 "Content-Type: image/png\nCache-Control: public, max-age=60\n!Expires\n"]
--- webp eval
["sample.png", undef]



=== TEST 24: smart_imaging_ttl with add_header Expires in the same location: no Cache-Control added
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_ttl 1h;
        add_header Expires "Thu, 01 Jan 2037 00:00:00 GMT";
    }
--- more_headers eval
["Accept: image/webp", ""]
--- request eval
["GET /sample.png", "GET /sample.png"]
--- response_headers eval
["Content-Type: image/webp\nExpires: Thu, 01 Jan 2037 00:00:00 GMT\n!Cache-Control\n",
 "Content-Type: image/png\nExpires: Thu, 01 Jan 2037 00:00:00 GMT\n!Cache-Control\n"]
--- webp eval
["sample.png", undef]



=== TEST 25: smart_imaging_ttl 1h on a 304: the same Cache-Control as the 200
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_ttl 1h;
    }
--- more_headers eval
"If-None-Match: $::JpegETag\n"
--- request
GET /sample.jpg
--- error_code: 304
--- response_headers
Vary: Accept
Cache-Control: max-age=3600



=== TEST 26: proxied: upstream Cache-Control, Timing-Allow-Origin, X-Robots-Tag survive the conversion
--- http_config eval
$::Types . <<'_EOC_'
    server {
        listen unix:$TEST_NGINX_HTML_DIR/origin.sock;
        root $TEST_NGINX_HTML_DIR;
        add_header Timing-Allow-Origin "*";
        add_header X-Robots-Tag "noindex, nofollow";
        add_header Cache-Control "public, max-age=86400";
        add_header Link "</style.css>; rel=preload; as=style";
    }
_EOC_
--- config
    location /shop/ {
        smart_imaging on;
        smart_imaging_ttl 1h;
        proxy_pass http://unix:$TEST_NGINX_HTML_DIR/origin.sock:/;
    }
--- more_headers
Accept: image/webp
--- request
GET /shop/sample.jpg
--- response_headers eval
"Content-Type: image/webp\nVary: Accept\nTiming-Allow-Origin: *\nX-Robots-Tag: noindex, nofollow\nCache-Control: public, max-age=86400\nLink: </style.css>; rel=preload; as=style\nETag: $::JpegWebpETag\nLast-Modified: $::LastModified\n!Accept-Ranges\n"
--- webp: sample.jpg
--- no_error_log
[error]



=== TEST 27: proxied, no WebP: upstream headers survive, original bytes
--- http_config eval
$::Types . <<'_EOC_'
    server {
        listen unix:$TEST_NGINX_HTML_DIR/origin.sock;
        root $TEST_NGINX_HTML_DIR;
        add_header Timing-Allow-Origin "*";
        add_header X-Robots-Tag "noindex";
    }
_EOC_
--- config
    location /shop/ {
        smart_imaging on;
        proxy_pass http://unix:$TEST_NGINX_HTML_DIR/origin.sock:/;
    }
--- request
GET /shop/sample.png
--- response_headers eval
"Content-Type: image/png\nVary: Accept\nTiming-Allow-Origin: *\nX-Robots-Tag: noindex\nETag: $::PngETag\n"
--- response_body eval
$::Png



=== TEST 28: proxied: an upstream Expires (no Cache-Control) keeps smart_imaging_ttl out
--- http_config eval
$::Types . <<'_EOC_'
    server {
        listen unix:$TEST_NGINX_HTML_DIR/origin.sock;
        root $TEST_NGINX_HTML_DIR;
        add_header Expires "Thu, 01 Jan 2037 00:00:00 GMT";
    }
_EOC_
--- config
    location /shop/ {
        smart_imaging on;
        smart_imaging_ttl 1h;
        proxy_pass http://unix:$TEST_NGINX_HTML_DIR/origin.sock:/;
    }
--- more_headers eval
["Accept: image/webp", ""]
--- request eval
["GET /shop/sample.jpg", "GET /shop/sample.jpg"]
--- response_headers eval
["Content-Type: image/webp\nExpires: Thu, 01 Jan 2037 00:00:00 GMT\n!Cache-Control\n",
 "Content-Type: image/jpeg\nExpires: Thu, 01 Jan 2037 00:00:00 GMT\n!Cache-Control\n"]
--- webp eval
["sample.jpg", undef]



=== TEST 29: proxied, upstream without Cache-Control: smart_imaging_ttl adds it
--- http_config eval
$::Types . <<'_EOC_'
    server {
        listen unix:$TEST_NGINX_HTML_DIR/origin.sock;
        root $TEST_NGINX_HTML_DIR;
    }
_EOC_
--- config
    location /shop/ {
        smart_imaging on;
        smart_imaging_ttl 2d;
        proxy_pass http://unix:$TEST_NGINX_HTML_DIR/origin.sock:/;
    }
--- more_headers
Accept: image/webp
--- request
GET /shop/sample.png
--- response_headers
Content-Type: image/webp
Cache-Control: max-age=172800
--- webp: sample.png



=== TEST 30: smart_imaging off in a nested location disables it (no conversion, no Vary)
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_ttl 1h;
        location /raw/ {
            smart_imaging off;
        }
    }
--- more_headers
Accept: image/webp
--- request eval
["GET /raw/sample.jpg", "GET /sample.jpg"]
--- response_headers eval
["Content-Type: image/jpeg\nContent-Length: 53962\n!Vary\n!Cache-Control\n",
 "Content-Type: image/webp\nVary: Accept\nCache-Control: max-age=3600\n"]
--- response_body_like eval
[qr/\A\Q$::Jpeg\E\z/s, qr/\ARIFF.{4}WEBP/s]
--- webp eval
[undef, "sample.jpg"]



=== TEST 31: smart_imaging on inside "if" in a location
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        if ($arg_webp = "yes") {
            smart_imaging on;
        }
    }
--- more_headers
Accept: image/webp
--- request eval
["GET /sample.jpg?webp=yes", "GET /sample.jpg?webp=no"]
--- response_headers eval
["Content-Type: image/webp\nVary: Accept\n",
 "Content-Type: image/jpeg\n!Vary\n"]
--- response_body_like eval
[qr/\ARIFF.{4}WEBP/s, qr/\A\Q$::Jpeg\E\z/s]
--- webp eval
["sample.jpg", undef]



=== TEST 32: smart_imaging off inside "if" in an enabled location
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        if ($http_x_no_webp) {
            smart_imaging off;
        }
    }
--- more_headers eval
["Accept: image/webp\nX-No-Webp: 1", "Accept: image/webp"]
--- request eval
["GET /sample.png", "GET /sample.png"]
--- response_headers eval
["Content-Type: image/png\n!Vary\n",
 "Content-Type: image/webp\nVary: Accept\n"]
--- response_body_like eval
[qr/\A\Q$::Png\E\z/s, qr/\ARIFF.{4}WEBP/s]
--- webp eval
[undef, "sample.png"]



=== TEST 33: etag off: the converted response has no ETag (none is invented)
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        etag off;
    }
--- more_headers
Accept: image/webp
--- request
GET /sample.jpg
--- response_headers eval
"Content-Type: image/webp\n!ETag\nLast-Modified: $::LastModified\n"
--- webp: sample.jpg



=== TEST 34: proxied: a weak upstream ETag W/"abc" becomes W/"abc-webp-q100-src"
--- http_config eval
$::Types . <<'_EOC_'
    server {
        listen unix:$TEST_NGINX_HTML_DIR/origin.sock;
        root $TEST_NGINX_HTML_DIR;
        etag off;
        add_header ETag 'W/"abc"';
    }
_EOC_
--- config
    location /shop/ {
        smart_imaging on;
        proxy_pass http://unix:$TEST_NGINX_HTML_DIR/origin.sock:/;
    }
--- more_headers eval
["Accept: image/webp", ""]
--- request eval
["GET /shop/sample.png", "GET /shop/sample.png"]
--- response_headers eval
["Content-Type: image/webp\nETag: W/\"abc-webp-q100-src\"\n",
 "Content-Type: image/png\nETag: W/\"abc\"\n"]
--- webp eval
["sample.png", undef]



=== TEST 35: proxied with proxy_cache: converted on the miss and on the hit, same headers
--- http_config eval
$::Types . <<'_EOC_'
    proxy_cache_path $TEST_NGINX_HTML_DIR/cache keys_zone=images:1m;
    server {
        listen unix:$TEST_NGINX_HTML_DIR/origin.sock;
        root $TEST_NGINX_HTML_DIR;
        add_header X-Robots-Tag noindex;
    }
_EOC_
--- config
    location /shop/ {
        smart_imaging on;
        proxy_cache images;
        proxy_cache_valid 200 1h;
        add_header X-Cache $upstream_cache_status;
        proxy_pass http://unix:$TEST_NGINX_HTML_DIR/origin.sock:/;
    }
--- more_headers
Accept: image/webp
--- request eval
["GET /shop/sample.jpg", "GET /shop/sample.jpg"]
--- response_headers eval
["Content-Type: image/webp\nVary: Accept\nX-Robots-Tag: noindex\nETag: $::JpegWebpETag\n",
 "Content-Type: image/webp\nVary: Accept\nX-Robots-Tag: noindex\nETag: $::JpegWebpETag\nX-Cache: HIT\n"]
--- webp eval
["sample.jpg", "sample.jpg"]
--- no_error_log
[warn]
[error]



=== TEST 36: proxied gzip-encoded JPEG (Content-Encoding): not touched, no Vary: Accept
--- http_config eval
$::Types . <<'_EOC_'
    server {
        listen unix:$TEST_NGINX_HTML_DIR/origin.sock;
        root $TEST_NGINX_HTML_DIR;
        gzip on;
        gzip_types image/jpeg;
        gzip_min_length 1;
    }
_EOC_
--- config
    location /shop/ {
        smart_imaging on;
        smart_imaging_ttl 1h;
        proxy_pass http://unix:$TEST_NGINX_HTML_DIR/origin.sock:/;
        # gzip only answers HTTP/1.1 requests (gzip_http_version).
        proxy_http_version 1.1;
    }
--- more_headers
Accept: image/webp
Accept-Encoding: gzip
--- request
GET /shop/sample.jpg
--- response_headers
Content-Type: image/jpeg
Content-Encoding: gzip
!Vary
!Cache-Control
--- response_body_like: ^\x1f\x8b
--- no_error_log
converted to webp



=== TEST 37: Content-Types image/pjpeg and image/x-png are candidates too
--- http_config
    types {
        image/pjpeg  jpg;
        image/x-png  png;
    }
--- more_headers
Accept: image/webp
--- request eval
["GET /sample.jpg", "GET /sample.png"]
--- response_headers eval
["Content-Type: image/webp\nVary: Accept\n",
 "Content-Type: image/webp\nVary: Accept\n"]
--- webp eval
["sample.jpg", "sample.png"]



=== TEST 38: image/webp in a second Accept header line counts
--- more_headers
Accept: image/png,*/*;q=0.8
Accept: image/webp
--- request
GET /sample.jpg
--- response_headers
Content-Type: image/webp
Vary: Accept
--- webp: sample.jpg



=== TEST 39: If-None-Match with the derivative's own ETag: 304, without converting again
--- log_level: info
--- more_headers eval
"Accept: image/webp\nIf-None-Match: $::JpegWebpETag\n"
--- request
GET /sample.jpg
--- error_code: 304
--- response_headers eval
"ETag: $::JpegWebpETag\nVary: Accept\n!Content-Length\n"
--- response_body eval
""
--- no_error_log
converted to webp



=== TEST 40: If-None-Match with a derivative ETag of another variant: the full WebP
--- more_headers eval
"Accept: image/webp\nIf-None-Match: W/\"1-2-webp-q70-w400\"\n"
--- request
GET /sample.jpg
--- error_code: 200
--- response_headers eval
"Content-Type: image/webp\nETag: $::JpegWebpETag\n"
--- webp: sample.jpg



=== TEST 41: HEAD without WebP Accept: the original's headers (as GET's), no body
--- more_headers
Accept: image/jpeg
--- request
HEAD /sample.jpg
--- response_headers eval
"Content-Type: image/jpeg\nContent-Length: 53962\nETag: $::JpegETag\nVary: Accept\nAccept-Ranges: bytes\n"
--- response_body eval
""
--- no_error_log
[error]



=== TEST 42: HEAD with If-None-Match of the derivative: 304, as GET
--- more_headers eval
"Accept: image/webp\nIf-None-Match: $::JpegWebpETag\n"
--- request
HEAD /sample.jpg
--- error_code: 304
--- response_headers eval
"ETag: $::JpegWebpETag\nVary: Accept\n"
--- response_body eval
""
--- no_error_log
[error]
