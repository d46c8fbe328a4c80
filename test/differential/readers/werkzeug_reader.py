# Reads requests (one JSON line each on stdin: method, target, headers, body in base64) through
# werkzeug's Request (Flask's request object) and prints what a WSGI application sees.
import base64, io, json, sys
from urllib.parse import unquote_to_bytes
from werkzeug.wrappers import Request

for line in sys.stdin:
    try:
        req = json.loads(line)
        body = base64.b64decode(req['body'])
        target = req['target']
        path, _, query = target.partition('?')
        environ = {
            'REQUEST_METHOD': req['method'],
            # As a WSGI server passes it: percent-decoded, bytes as latin-1.
            'PATH_INFO': unquote_to_bytes(path).decode('latin-1'),
            'QUERY_STRING': query,
            'SERVER_NAME': 'upstream', 'SERVER_PORT': '80', 'wsgi.url_scheme': 'http',
            'wsgi.input': io.BytesIO(body), 'CONTENT_LENGTH': str(len(body)),
        }
        for name, value in req['headers']:
            key = name.upper().replace('-', '_')
            if key in ('CONTENT_TYPE', 'CONTENT_LENGTH'):
                environ[key] = value
            else:
                key = 'HTTP_' + key
                environ[key] = environ[key] + ',' + value if key in environ else value
        r = Request(environ)
        out = {'method': r.method, 'path': r.path, 'query': r.args.to_dict(flat=False), 'headers': {}}
        if r.mimetype == 'application/x-www-form-urlencoded':
            out['form'] = r.form.to_dict(flat=False)
        elif r.is_json and body:
            out['json'] = json.loads(body)
        print(json.dumps(out), flush=True)
    except Exception as e:
        print(json.dumps({'error': f'{type(e).__name__}: {e}'[:200]}), flush=True)
