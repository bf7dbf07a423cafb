# smart-imaging: bodies the module cannot or must not convert.  Whatever
# goes wrong, a WebP-capable client gets status 200 and the original bytes,
# and error_log gets one smart_imaging line saying why (docs/failures.md, "Failures
# degrade to the original"): [warn] for failures, [info] for "not smaller"
# and for bodies over smart_imaging_buffer.  Needs the module:
#
#   TEST_NGINX_BINARY=/path/to/nginx \
#   TEST_NGINX_LOAD_MODULES=target/debug/libngx_http_smart_imaging_module.so \
#       prove -I t/lib t/002-failures.t
#
# The broken images are built here in Perl (t/lib/SmartImaging.pm helpers)
# from the samples in TEST_NGINX_SAMPLES.

use Test::Nginx::Socket;
# t/lib after Test::Nginx::Socket: prove -I t/lib gives ours, -I REAL/lib the
# real one.
use FindBin ();
use lib "$FindBin::Bin/lib";
use SmartImaging ();

# The real Test::Nginx does not set it (lua-nginx-module's t/*.t do this too).
$ENV{TEST_NGINX_HTML_DIR} ||= html_dir();

my %Samples = SmartImaging::default_samples();

our ($Jpeg, $Png) =
    @{ SmartImaging::require_samples(\%Samples) }{'sample.jpg', 'sample.png'};

# SOI + APP0 (JFIF) of a real JPEG, then 20000 bytes of noise.
our $CorruptJpeg = do {
    my $app0_len = unpack 'n', substr($Jpeg, 4, 2);
    substr($Jpeg, 0, 4 + $app0_len) . SmartImaging::noise_bytes(7, 20000);
};

# The first half of each sample.
our $TruncJpeg = substr $Jpeg, 0, int(length($Jpeg) / 2);
our $TruncPng  = substr $Png, 0, int(length($Png) / 2);

# A valid PNG header claiming 30000x30000 (900 megapixels) of 8-bit gray
# with a ~50-byte IDAT; and one just over the default max_pixels
# (16000000, README.md) that WebP could otherwise hold.
our $PngBomb  = SmartImaging::png_bomb(30000, 30000);
our $PngOver  = SmartImaging::png_bomb(4001, 4000);

# The sample JPEG with a SOF claiming 60000x60000.
our $JpegBomb = SmartImaging::jpeg_with_size($Jpeg, 60000, 60000);

# A real GIF, to be served as image/jpeg.
our $Gif = SmartImaging::tiny_gif();

# 256x256 1-bit noise: 8.5 KB as PNG, several times that as lossy WebP.
our $Noise = SmartImaging::noise_png(256, 256, 5);

# The generated files must be what they claim to be, or the tests below
# would prove nothing.
{
    my $bomb = SmartImaging::png_info($PngBomb);
    die "png_bomb: bad PNG\n"
        unless $bomb && "$bomb->{width}x$bomb->{height}" eq '30000x30000'
            && length $PngBomb < 200;
    my $jb = SmartImaging::jpeg_info($JpegBomb);
    die "jpeg_with_size: bad JPEG\n"
        unless $jb && "$jb->{width}x$jb->{height}" eq '60000x60000';
    my $n = SmartImaging::png_info($Noise);
    die "noise_png: bad PNG\n" unless $n && $n->{bit_depth} == 1;
    # An IEND chunk's CRC is a well-known constant.
    die "crc32 is broken\n" unless SmartImaging::crc32('IEND') == 0xAE426082;
}

# Every block gets these under html/ (unless it has its own user_files).
our @Files = (
    ['sample.jpg',    $Jpeg],
    ['sample.png',    $Png],
    ['corrupt.jpg',   $CorruptJpeg],
    ['trunc.jpg',     $TruncJpeg],
    ['trunc.png',     $TruncPng],
    ['empty.jpg',     ''],
    ['empty.png',     ''],
    ['bomb.png',      $PngBomb],
    ['over.png',      $PngOver],
    ['bomb.jpg',      $JpegBomb],
    ['gif.jpg',       $Gif],
    ['noise.png',     $Noise],
);

repeat_each(2);
# Blocks have a "location /" of their own (static_location() among them): no
# default one from the harness.
no_root_location();
no_long_string();

# info, so that the patterns below check each line's exact level ([warn] or
# [info]) and that nothing was converted where nothing may be.
log_level('info');

# All requests here come from a WebP-capable client.
SmartImaging::add_block_defaults(SmartImaging::static_defaults(),
                                 user_files   => \@Files,
                                 more_headers => "Accept: image/webp,*/*\n");

SmartImaging::add_webp_check(\%Samples);

plan 'no_plan';

run_tests();

__DATA__

=== TEST 1: corrupt JPEG (JFIF header + noise): original, [warn] decode failed
--- request
GET /corrupt.jpg
--- response_headers
Content-Type: image/jpeg
Content-Length: 20020
Vary: Accept
--- response_body eval
$::CorruptJpeg
--- error_log eval
qr/\[warn\] .*smart_imaging: "\/corrupt\.jpg" not converted \([\d.]+ ms\): decode failed: JPEG(?: warning)?: .+, serving original/
--- no_error_log eval
[qr/\[(?:alert|crit|emerg)\]/, "converted to webp"]



=== TEST 2: truncated JPEG (first half): original, [warn] file is truncated
--- request
GET /trunc.jpg
--- response_headers
Content-Type: image/jpeg
Content-Length: 26981
Vary: Accept
--- response_body eval
$::TruncJpeg
--- error_log eval
qr/\[warn\] .*smart_imaging: "\/trunc\.jpg" not converted \([\d.]+ ms\): decode failed: JPEG: file is truncated, serving original/
--- no_error_log eval
[qr/\[(?:alert|crit|emerg)\]/, "converted to webp"]



=== TEST 3: truncated PNG (first half): original, [warn] decode failed
--- request
GET /trunc.png
--- response_headers
Content-Type: image/png
Content-Length: 29026
Vary: Accept
--- response_body eval
$::TruncPng
--- error_log eval
qr/\[warn\] .*smart_imaging: "\/trunc\.png" not converted \([\d.]+ ms\): decode failed: PNG: .+, serving original/
--- no_error_log eval
[qr/\[(?:alert|crit|emerg)\]/, "converted to webp"]



=== TEST 4: zero-byte .jpg: empty 200, [warn] not a JPEG or PNG
--- request
GET /empty.jpg
--- response_headers
Content-Type: image/jpeg
Content-Length: 0
Vary: Accept
--- response_body eval
""
--- error_log eval
qr/\[warn\] .*smart_imaging: body is not a JPEG or PNG \(Content-Type says image\), serving original/
--- no_error_log eval
[qr/\[(?:alert|crit|emerg)\]/, "converted to webp"]



=== TEST 5: zero-byte .png: empty 200, [warn] not a JPEG or PNG
--- request
GET /empty.png
--- response_headers
Content-Type: image/png
Content-Length: 0
Vary: Accept
--- response_body eval
""
--- error_log eval
qr/\[warn\] .*smart_imaging: body is not a JPEG or PNG \(Content-Type says image\), serving original/
--- no_error_log eval
[qr/\[(?:alert|crit|emerg)\]/, "converted to webp"]



=== TEST 6: PNG pixel bomb (30000x30000, tiny IDAT): original, [warn] over the limit
--- request
GET /bomb.png
--- response_headers
Content-Type: image/png
Vary: Accept
--- response_body eval
$::PngBomb
--- error_log eval
qr/\[warn\] .*smart_imaging: "\/bomb\.png" not converted \([\d.]+ ms\): image is 30000x30000, over the limit of 16000000 pixels, serving original/
--- no_error_log eval
[qr/\[(?:alert|crit|emerg)\]/, "converted to webp"]



=== TEST 7: JPEG whose SOF claims 60000x60000: original, [warn] over the limit
--- request
GET /bomb.jpg
--- response_headers
Content-Type: image/jpeg
Vary: Accept
--- response_body eval
$::JpegBomb
--- error_log eval
qr/\[warn\] .*smart_imaging: "\/bomb\.jpg" not converted \([\d.]+ ms\): image is 60000x60000, over the limit of 16000000 pixels, serving original/
--- no_error_log eval
[qr/\[(?:alert|crit|emerg)\]/, "converted to webp"]



=== TEST 8: default smart_imaging_max_pixels is 16000000 (README): 4001x4000 refused
--- request
GET /over.png
--- response_headers
Content-Type: image/png
--- response_body eval
$::PngOver
--- error_log eval
qr/\[warn\] .*smart_imaging: "\/over\.png" not converted \([\d.]+ ms\): image is 4001x4000, over the limit of 16000000 pixels, serving original/
--- no_error_log eval
[qr/\[(?:alert|crit|emerg)\]/, "converted to webp"]



=== TEST 9: smart_imaging_max_pixels 1000 with a normal 512x512 JPEG: original
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_max_pixels 1000;
    }
--- request
GET /sample.jpg
--- response_headers
Content-Type: image/jpeg
Content-Length: 53962
Vary: Accept
--- response_body eval
$::Jpeg
--- error_log eval
qr/\[warn\] .*smart_imaging: "\/sample\.jpg" not converted \([\d.]+ ms\): image is 512x512, over the limit of 1000 pixels, serving original/
--- no_error_log eval
[qr/\[(?:alert|crit|emerg)\]/, "converted to webp"]



=== TEST 10: smart_imaging_max_pixels 1000 with a normal 755x532 PNG: original
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_max_pixels 1000;
    }
--- request
GET /sample.png
--- response_headers
Content-Type: image/png
Content-Length: 58053
Vary: Accept
--- response_body eval
$::Png
--- error_log eval
qr/\[warn\] .*smart_imaging: "\/sample\.png" not converted \([\d.]+ ms\): image is 755x532, over the limit of 1000 pixels, serving original/
--- no_error_log eval
[qr/\[(?:alert|crit|emerg)\]/, "converted to webp"]



=== TEST 11: smart_imaging_max_pixels exactly the image's size (262144) converts
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_max_pixels 262144;
    }
--- request
GET /sample.jpg
--- response_headers
Content-Type: image/webp
Vary: Accept
--- webp: sample.jpg
--- error_log eval
qr/\[info\] .*smart_imaging: "\/sample\.jpg" converted to webp: 53962 -> \d+ bytes/
--- no_error_log eval
[qr/\[(?:warn|alert|crit|emerg)\]/, "over the limit"]



=== TEST 12: smart_imaging_buffer 1k, static JPEG (Content-Length known): original, [info]
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_buffer 1k;
    }
--- request
GET /sample.jpg
--- response_headers
Content-Type: image/jpeg
Content-Length: 53962
Vary: Accept
--- response_body eval
$::Jpeg
--- error_log eval
qr/\[info\] .*smart_imaging: body of 53962 bytes is over smart_imaging_buffer \(1024\), serving original/
--- no_error_log eval
[qr/\[(?:warn|alert|crit|emerg)\]/, "converted to webp", "not converted"]



=== TEST 13: smart_imaging_buffer 1k, chunked upstream PNG (no Content-Length): original, [info]
--- http_config
    types {
        image/jpeg  jpg jpeg;
        image/png   png;
    }
    server {
        listen unix:$TEST_NGINX_HTML_DIR/origin.sock;
        root $TEST_NGINX_HTML_DIR;
        # ssi drops Content-Length: the origin answers chunked.
        ssi on;
        ssi_types image/png;
    }
--- config
    location /proxy/ {
        smart_imaging on;
        smart_imaging_buffer 1k;
        proxy_pass http://unix:$TEST_NGINX_HTML_DIR/origin.sock:/;
        proxy_http_version 1.1;
        proxy_buffering off;
    }
--- request
GET /proxy/sample.png
--- response_headers
Content-Type: image/png
Transfer-Encoding: chunked
Vary: Accept
--- response_body eval
$::Png
--- error_log eval
qr/\[info\] .*smart_imaging: body is over smart_imaging_buffer \(1024 bytes\), serving original/
--- no_error_log eval
[qr/\[(?:warn|alert|crit|emerg)\]/, "converted to webp", "not converted"]



=== TEST 14: smart_imaging_buffer exactly the file size (53962) still converts
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_buffer 53962;
    }
--- request
GET /sample.jpg
--- response_headers
Content-Type: image/webp
Vary: Accept
--- webp: sample.jpg
--- error_log eval
qr/\[info\] .*smart_imaging: "\/sample\.jpg" converted to webp: 53962 -> \d+ bytes/
--- no_error_log eval
[qr/\[(?:warn|alert|crit|emerg)\]/, "smart_imaging_buffer"]



=== TEST 15: a GIF named .jpg, served as image/jpeg: original, [warn] not a JPEG or PNG
--- request
GET /gif.jpg
--- response_headers
Content-Type: image/jpeg
Content-Length: 35
Vary: Accept
--- response_body eval
$::Gif
--- error_log eval
qr/\[warn\] .*smart_imaging: body is not a JPEG or PNG \(Content-Type says image\), serving original/
--- no_error_log eval
[qr/\[(?:alert|crit|emerg)\]/, "converted to webp"]



=== TEST 16: WebP not smaller than the PNG (1-bit noise): original, [info] not smaller
--- request
GET /noise.png
--- response_headers
Content-Type: image/png
Vary: Accept
--- response_body eval
$::Noise
--- error_log eval
qr/\[info\] .*smart_imaging: "\/noise\.png" not converted \([\d.]+ ms\): converted image \(\d+ bytes\) is not smaller than the original \(8486 bytes\), serving original/
--- no_error_log eval
[qr/\[(?:warn|alert|crit|emerg)\]/, "converted to webp"]



=== TEST 17: proxied corrupt JPEG (upstream with Content-Length): original, [warn]
--- http_config
    types {
        image/jpeg  jpg jpeg;
        image/png   png;
    }
    server {
        listen unix:$TEST_NGINX_HTML_DIR/origin.sock;
        root $TEST_NGINX_HTML_DIR;
    }
--- config
    location /proxy/ {
        smart_imaging on;
        proxy_pass http://unix:$TEST_NGINX_HTML_DIR/origin.sock:/;
    }
--- request
GET /proxy/trunc.jpg
--- response_headers
Content-Type: image/jpeg
Content-Length: 26981
Vary: Accept
--- response_body eval
$::TruncJpeg
--- error_log eval
qr/\[warn\] .*smart_imaging: "\/proxy\/trunc\.jpg" not converted \([\d.]+ ms\): decode failed: JPEG: file is truncated, serving original/
--- no_error_log eval
[qr/\[(?:alert|crit|emerg)\]/, "converted to webp"]



=== TEST 18: proxied chunked pixel bomb: original, [warn] over the limit
--- http_config
    types {
        image/jpeg  jpg jpeg;
        image/png   png;
    }
    server {
        listen unix:$TEST_NGINX_HTML_DIR/origin.sock;
        root $TEST_NGINX_HTML_DIR;
        ssi on;
        ssi_types image/png;
    }
--- config
    location /proxy/ {
        smart_imaging on;
        proxy_pass http://unix:$TEST_NGINX_HTML_DIR/origin.sock:/;
        proxy_http_version 1.1;
    }
--- request
GET /proxy/bomb.png
--- response_headers
Content-Type: image/png
Transfer-Encoding: chunked
Vary: Accept
--- response_body eval
$::PngBomb
--- error_log eval
qr/\[warn\] .*smart_imaging: "\/proxy\/bomb\.png" not converted \([\d.]+ ms\): image is 30000x30000, over the limit of 16000000 pixels, serving original/
--- no_error_log eval
[qr/\[(?:alert|crit|emerg)\]/, "converted to webp"]



=== TEST 19: the worker survives the failures: a good JPEG right after is converted
--- request eval
["GET /corrupt.jpg", "GET /bomb.png", "GET /trunc.png", "GET /sample.jpg"]
--- response_headers eval
["Content-Type: image/jpeg", "Content-Type: image/png",
 "Content-Type: image/png", "Content-Type: image/webp"]
--- response_body_like eval
[qr/\A\Q$::CorruptJpeg\E\z/s, qr/\A\Q$::PngBomb\E\z/s,
 qr/\A\Q$::TruncPng\E\z/s, qr/\ARIFF.{4}WEBP/s]
--- webp eval
[undef, undef, undef, "sample.jpg"]
--- error_log eval
# Checked after each response, on what it logged: each failure its [warn]
# (TESTs 1-18 check the messages), the good JPEG its conversion.
qr/\[(?:warn|info)\] .*smart_imaging: "\/(?:(?:corrupt\.jpg|bomb\.png|trunc\.png)" not converted|sample\.jpg" converted to webp: 53962 -> \d+ bytes)/
--- no_error_log eval
[qr/\[(?:alert|crit|emerg)\]/, "exited on signal"]



=== TEST 20: smart_imaging_timeout 1ms: the conversion is abandoned, the original is served whole, [warn]
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_timeout 1ms;
        smart_imaging_debug_header on;
    }
--- request
GET /sample.jpg
--- response_headers_like
Content-Type: image/jpeg
Content-Length: 53962
Vary: Accept
X-Smart-Imaging: original reason=timeout in=53962 time=\d+ms
--- response_body eval
$::Jpeg
--- error_log eval
qr/\[warn\] .*smart_imaging: "\/sample\.jpg" not converted \([\d.]+ ms\): conversion took longer than smart_imaging_timeout 1ms, serving original/
--- no_error_log eval
[qr/\[(?:alert|crit|emerg)\]/, "converted to webp"]
