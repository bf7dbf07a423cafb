# smart-imaging: what the module did with a response (docs/logging.md,
# "$smart_imaging_result", smart_imaging_debug_header, smart_imaging_guard):
# the X-Smart-Imaging header with smart_imaging_debug_header on (and none
# by default), $smart_imaging_result in the access log, and the directives'
# errors.  Small generated images only: the visual-quality guard encodes
# each image several times.  Needs the module:
#
#   TEST_NGINX_BINARY=/path/to/nginx \
#   TEST_NGINX_LOAD_MODULES=target/debug/libngx_http_smart_imaging_module.so \
#       prove -I t/lib t/006-result.t

use Test::Nginx::Socket;
# t/lib after Test::Nginx::Socket: prove -I t/lib gives ours, -I REAL/lib the
# real one.
use FindBin ();
use lib "$FindBin::Bin/lib";
use SmartImaging ();

# The real Test::Nginx does not set it (lua-nginx-module's t/*.t do this too).
$ENV{TEST_NGINX_HTML_DIR} ||= html_dir();

our $Photo = SmartImaging::gradient_png(128, 96);      # WebP is smaller
our $Noise = SmartImaging::noise_png(256, 256, 5);     # WebP is not smaller
our $PhotoLen = length $Photo;
our $NoiseLen = length $Noise;

our @Files = (
    ['photo.png',         $Photo],
    ['noise.png',         $Noise],
    ['noguard/noise.png', $Noise],
    ['noguard/photo.png', $Photo],
    ['hello.txt',         "hello, world\n"],
);

# How nginx reports a bad directive (see t/004-directives.t).
sub emerg {
    my $msg = shift;
    return qr/\[emerg\] (?:\d+#\d+: )?\Q$msg\E in \S*nginx\.conf:\d+/;
}

# $smart_imaging_result / X-Smart-Imaging of a converted response.
our $Converted = qr/^converted format=webp in=\d+ out=\d+ saved=\d+\.\d% quality=\d+(?: score=\d+\.\d)? encodes=\d+ time=\d+ms$/;

# For "--- http_config eval" sections: "$::Types . ...".
our $Types = SmartImaging::types_config();

# html/ with the module on and smart_imaging_debug_header on; noguard/ has
# the guard off.
our $DebugConfig = <<'_EOC_';
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_debug_header on;
        location /noguard/ {
            smart_imaging_guard off;
        }
    }
_EOC_

repeat_each(2);
# Blocks have a "location /" of their own (static_location() among them): no
# default one from the harness.
no_root_location();
no_long_string();

SmartImaging::add_block_defaults(http_config => $Types,
                                 config      => $DebugConfig,
                                 user_files  => \@Files);

plan 'no_plan';

run_tests();

__DATA__

=== TEST 1: converted: X-Smart-Imaging with format, sizes, quality, encodes, time
--- more_headers
Accept: image/webp,*/*
--- request
GET /photo.png
--- response_headers_like eval
SmartImaging::headers_like(
"Content-Type: image/webp\n",
"X-Smart-Imaging: $::Converted")
--- response_body_like: ^RIFF
--- no_error_log
[error]



=== TEST 2: no X-Smart-Imaging without smart_imaging_debug_header (default off)
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
    }
--- request eval
["GET /photo.png", "GET /noise.png", "GET /photo.png"]
--- more_headers eval
["Accept: image/webp", "Accept: image/webp", "Accept: image/png"]
--- response_headers eval
["Content-Type: image/webp\n!X-Smart-Imaging\n",
 "Content-Type: image/png\n!X-Smart-Imaging\n",
 "Content-Type: image/png\n!X-Smart-Imaging\n"]



=== TEST 3: smart_imaging_debug_header off in a nested location
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_debug_header on;
        location /noguard/ {
            smart_imaging_debug_header off;
        }
    }
--- more_headers
Accept: image/webp
--- request eval
["GET /noguard/photo.png", "GET /photo.png"]
--- response_headers_like eval
SmartImaging::headers_like(
["Content-Type: image/webp\n!X-Smart-Imaging\n",
 "Content-Type: image/webp\n"],
[undef, "X-Smart-Imaging: ^converted format=webp .*"])




=== TEST 4: not smaller (guard off: one WebP encode): the original, and why
--- more_headers
Accept: image/webp
--- request
GET /noguard/noise.png
--- response_headers_like eval
SmartImaging::headers_like(
"Content-Type: image/png\n",
"X-Smart-Imaging: ^original reason=not-smaller in=$::NoiseLen out=\\d+ time=\\d+ms\$")
--- response_body eval
$::Noise



=== TEST 5: smart_imaging_guard off: no score, one encode
--- more_headers
Accept: image/webp
--- request
GET /noguard/photo.png
--- response_headers_like eval
SmartImaging::headers_like(
"Content-Type: image/webp\n",
"X-Smart-Imaging: ^converted format=webp in=$::PhotoLen out=\\d+ saved=[\\d.]+% quality=100 encodes=1 time=\\d+ms\$")




=== TEST 6: over smart_imaging_buffer (Content-Length): too-big, with the limit
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_debug_header on;
        smart_imaging_buffer 1k;
    }
--- more_headers
Accept: image/webp
--- request
GET /photo.png
--- response_headers eval
"Content-Type: image/png\nX-Smart-Imaging: original reason=too-big in=$::PhotoLen buffer=1024\n"
--- response_body eval
$::Photo



=== TEST 7: a client that takes nothing better: nothing-to-do
--- more_headers
Accept: image/png,image/*;q=0.8
--- request
GET /photo.png
--- response_headers eval
"Content-Type: image/png\nX-Smart-Imaging: original reason=nothing-to-do in=$::PhotoLen\n"
--- response_body eval
$::Photo



=== TEST 8: HEAD: served as the GET it stands for, it reports GET's conversion
--- more_headers
Accept: image/webp
--- request
HEAD /photo.png
--- response_headers_like eval
SmartImaging::headers_like(
"Content-Type: image/webp\n",
"X-Smart-Imaging: $::Converted")
--- response_body eval
""



=== TEST 9: 304 of the original: not-modified
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_debug_header on;
        if_modified_since before;
    }
--- more_headers
If-Modified-Since: Thu, 31 Dec 2037 23:55:55 GMT
--- request
GET /photo.png
--- error_code: 304
--- response_headers
X-Smart-Imaging: original reason=not-modified



=== TEST 10: bfc=off and non-image responses: no X-Smart-Imaging
--- more_headers
Accept: image/webp
--- request eval
["GET /photo.png?bfc=off", "GET /hello.txt"]
--- response_headers eval
["Content-Type: image/png\n!X-Smart-Imaging\n!Vary\n",
 "Content-Type: text/plain\n!X-Smart-Imaging\n"]



=== TEST 11: $smart_imaging_result in the access log
--- http_config eval
$::Types . <<'_EOC_'
    log_format result '$request_uri $status [$smart_imaging_result]';
_EOC_
--- config
    access_log $TEST_NGINX_HTML_DIR/result.log result;
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        location /noguard/ {
            smart_imaging_guard off;
        }
    }
    location /plain/ {
        alias $TEST_NGINX_HTML_DIR/;
    }
    location = /result.log {
        root $TEST_NGINX_HTML_DIR;
        access_log off;
    }
--- more_headers
Accept: image/webp
--- request eval
["GET /photo.png", "GET /noguard/noise.png", "GET /photo.png?bfc=off",
 "GET /hello.txt", "GET /plain/photo.png", "GET /result.log"]
--- response_body_like eval
[qr/\ARIFF/, qr/\A\x89PNG/, qr/\A\x89PNG/, qr/\Ahello/, qr/\A\x89PNG/,
 qr{
    ^/photo\.png\ 200\ \[converted\ format=webp\ in=$::PhotoLen\ out=\d+\ saved=[\d.]+%\ quality=\d+(?:\ score=[\d.]+)?\ encodes=\d+\ time=\d+ms\]\n
    /noguard/noise\.png\ 200\ \[original\ reason=not-smaller\ in=$::NoiseLen\ out=\d+\ time=\d+ms\]\n
    /photo\.png\?bfc=off\ 200\ \[original\ reason=off\ in=$::PhotoLen\]\n
    /hello\.txt\ 200\ \[original\ reason=not-candidate\ in=13\]\n
    /plain/photo\.png\ 200\ \[-\]\n
 }xm]
--- no_error_log
[error]



=== TEST 12: smart_imaging_guard 101: out of range
--- config
    location / {
        smart_imaging_guard 101;
    }
--- must_die
--- error_log eval
main::emerg(q{invalid value "101" (a score from 0 to 100, or off)})



=== TEST 13: smart_imaging_guard high: not a number
--- http_config
    smart_imaging_guard high;
--- must_die
--- error_log eval
main::emerg(q{invalid value "high" (a score from 0 to 100, or off)})



=== TEST 14: smart_imaging_guard twice
--- config
    location / {
        smart_imaging_guard 80;
        smart_imaging_guard 70.5;
    }
--- must_die
--- error_log eval
main::emerg(q{"smart_imaging_guard" directive is duplicate})



=== TEST 15: smart_imaging_guard_encodes 17: out of range
--- config
    location / {
        smart_imaging_guard_encodes 17;
    }
--- must_die
--- error_log eval
main::emerg(q{invalid value "17" (1 to 16)})



=== TEST 16: smart_imaging_guard_encodes 0 (server level)
--- config
    smart_imaging_guard_encodes 0;
--- must_die
--- error_log eval
main::emerg(q{invalid value "0" (1 to 16)})



=== TEST 17: smart_imaging_debug_header maybe: invalid flag
--- config
    location / {
        smart_imaging_debug_header maybe;
    }
--- must_die
--- error_log eval
main::emerg(q{invalid value "maybe" in "smart_imaging_debug_header" directive, it must be "on" or "off"})



=== TEST 18: valid guard values start (decimals, off, the bounds), inherited
--- http_config eval
$::Types . <<'_EOC_'
    smart_imaging_guard 72.5;
    smart_imaging_guard_encodes 16;
_EOC_
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_debug_header on;
        location /noguard/ {
            smart_imaging_guard off;
            smart_imaging_guard_encodes 1;
        }
    }
    location /a/ { smart_imaging_guard 0; }
    location /b/ { smart_imaging_guard 100; }
--- more_headers
Accept: image/webp
--- request eval
["GET /photo.png", "GET /noguard/photo.png"]
--- response_headers_like eval
["X-Smart-Imaging: $::Converted",
 "X-Smart-Imaging: ^converted format=webp .* quality=100 encodes=1 time=\\d+ms"]



=== TEST 19: a HEAD answered before the content phase (return) stays a HEAD: head
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_debug_header on;
        location /ret/ {
            default_type image/png;
            return 200 "not a png";
        }
    }
--- more_headers
Accept: image/webp
--- request
HEAD /ret/photo.png
--- response_headers
Content-Type: image/png
X-Smart-Imaging: original reason=head in=9
--- response_body eval
""
